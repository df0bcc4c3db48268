"""Where notifications go: a hook delivers one encoded body (``alerting.payload``) or raises DeliveryError.

One module per kind, each holding the hook, its settings model and its builder; ``registry.build_hook``
builds any of them from a rules file's ``hooks`` entry:

- ``webhook``: one HTTP POST of the JSON (Alertmanager webhook format), optionally signed with HMAC-SHA256;
- ``command``: runs a command with the JSON on its stdin;
- ``python``: calls ``package.module:function`` with the decoded JSON;
- ``kafka``: produces the JSON to a topic, keyed by the group key (``ingest.sink.KafkaSink``);
- ``alertmanager``: pushes the alerts to Alertmanager's ``/api/v2/alerts`` as Prometheus does (the hook
  is ``alerting.alertmanager.AlertmanagerHook``; ``alertmanager`` here holds its settings).

``base`` holds what they share: the ``Hook`` protocol, the settings every kind accepts, ``close_hook``
and the retry delay ``backoff_s``.

A hook makes exactly one attempt per ``deliver`` call: retries belong to the outbox worker, which keeps
notifications across restarts and waits ``backoff_s(attempt)`` between attempts. Every failure (refused,
timed out, non-2xx, non-zero exit, exception) is a ``DeliveryError`` whose message says what happened, and
a hook that cannot work as configured fails at construction, i.e. at start-up.
"""
