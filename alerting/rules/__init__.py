"""Alert rules: typed, frozen models loaded from YAML; an invalid file names every problem's rule and field.

Modules: ``vocabulary`` (severities, scopes, labels, durations), ``templates`` (annotation syntax),
``conditions`` (threshold, state, rate, absent), ``rule`` (one rule), ``ruleset`` (a file's rules, hooks
and routes, checked across each other), ``loading`` (``load_rules``/``parse_rules``: YAML to a ``RuleSet``).

A rules file (see ``deploy/alerts/rules.example.yaml``)::

    rules:
      - name: gpu_temperature            # unique, ^[a-z][a-z0-9_]*$
        scope: gpu                       # gpu | rack | rack_now: which frame the rule evaluates
        threshold: {column: temp_max, op: ">=", warning: 83, critical: 90}
        for: 2m                          # pending until the condition held this long (event time)
        keep_firing_for: 5m              # stays firing this long after the condition stopped holding
        labels: {team: compute}          # static labels
        annotations: {summary: "{rack_id} node {node} GPU {gpu} at {value:.1f} C"}
        group_by: [rule, satellite]      # default: one notification group per rule and satellite
    hooks:
      - {name: ops_webhook, kind: webhook, settings: {url: "https://ops.example/alerts", timeout_s: 5}}
    routes:
      - {match: {severity: critical}, hook: ops_webhook}

**Scopes** (the frame a rule reads, one row per entity and window; see ``alerting.evaluate``):
``gpu``: GPU windows (``WindowTables.gpu``, view ``gpu_rollups_1m``), entity ``rack_id, node, gpu``, event
time ``window_start``; ``rack``: judged rack windows (``judge_racks``, view ``rack_rollups_1m``), entity
``rack_id``, event time ``window_start``; ``rack_now``: the ground's judgement now (``judge_now``, view
``fleet_health_now``), entity ``rack_id``, event time ``as_of``.

**Conditions**, exactly one per rule:

- ``threshold: {column, op, warning, critical}``: ``column op level``; at least one level; the severity of
  a window is the worst level met; with both levels, the critical one must be the worse in ``op``'s
  direction (above warning for ``>``/``>=``, below it for ``<``/``<=``).
- ``state: {in: [...], severity_from_state}``: the ``state`` column is one of ``in``
  (``ok|degraded|critical|unknown``). With ``severity_from_state``, a ``critical`` state gives severity
  critical and ``degraded`` gives warning (other states: the rule's ``severity``); else every match has
  the rule's ``severity``.
- ``rate: {column, per_minutes, op, warning, critical}`` (scopes gpu and rack): ``(value now - value
  per_minutes earlier) / per_minutes``, in units per minute, compared like a threshold. The earlier window
  must be in the frame or in the ``context`` given to the evaluation (``Rule.lookback``); without it the
  window has no rate and does not fire.
- ``absent: {for_minutes}`` (scope rack_now only): no window of the rack in the last ``for_minutes``
  minutes (measured from the end of its last window, ``last_window_start + 1 minute``, to ``as_of``)
  **while ``in_contact_expected`` is true**. Silence during a predicted loss of signal never fires: the
  rack is out of sight by design, ``fleet_health_now`` reports it ``unknown``.

``severity`` (``info|warning|critical``, default ``warning``) is the severity of single-level rules
(``state``, ``absent``); threshold and rate rules take theirs from their levels and must not set it.

**Durations** (``for``, ``keep_firing_for``): whole numbers with units, ``30s``, ``2m``, ``1h``,
``1h30m``, or ``0`` (the default). A bare number is refused (seconds or minutes?).

**Labels**: every instance carries ``rule``, ``satellite`` (the part of ``rack_id`` before ``/``),
``rack_id``, ``node`` and ``gpu`` (scope gpu), ``severity``, plus the rule's static ``labels`` (names
``^[a-z_][a-z0-9_]*$``, the built-in names are reserved). ``group_by`` picks among the built-in ones.

**Annotations** are templates: ``{rack_id}``, ``{node}``, ``{gpu}`` (scope gpu), ``{value}``,
``{value:.Nf}`` (N decimals, 0-6), ``{severity}``, ``{satellite}``, ``{rule}`` and any static label;
``{{``/``}}`` for literal braces. An unknown placeholder, a format on anything but ``value``, or
``{value}`` in a state rule (which has no value) is an error naming the annotation.

**Hooks** are declared by ``name`` and ``kind`` (``webhook|kafka|command|python|alertmanager``) with free ``settings``
for now (``url``, ``timeout_s``, ``max_attempts``, ``backoff_s``, ``hmac_secret_env``, ``topic``,
``argv``, ``callable``). **Routes** ``{match: {label: value}, hook}`` must name a declared hook and match
labels some rule produces; an instance goes to the hook of *every* route whose ``match`` it satisfies, in
route order (``RuleSet.hooks_for``); an empty ``match`` matches everything.
"""
