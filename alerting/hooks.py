"""Where notifications go: a ``Hook`` delivers one encoded body (``alerting.payload``) or raises DeliveryError.

Five kinds, built from settings by ``build_hook(kind, settings)``:

- ``webhook``: one HTTP POST of the JSON (Alertmanager webhook format), optionally signed with HMAC-SHA256;
- ``command``: runs a command with the JSON on its stdin;
- ``python``: calls ``package.module:function`` with the decoded JSON;
- ``kafka``: produces the JSON to a topic, keyed by the group key (``ingest.sink.KafkaSink``);
- ``alertmanager``: pushes the alerts to Alertmanager's ``/api/v2/alerts`` as Prometheus does
  (``alerting.alertmanager``).

A hook makes exactly one attempt per ``deliver`` call: retries belong to the outbox worker, which keeps
notifications across restarts and waits ``backoff_s(attempt)`` between attempts. Every failure (refused,
timed out, non-2xx, non-zero exit, exception) is a ``DeliveryError`` whose message says what happened, and
a hook that cannot work as configured fails at construction, i.e. at start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib
import inspect
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from alerting.errors import AlertingError, DeliveryError
from alerting.payload import Notification
from ingest.errors import IngestError

if TYPE_CHECKING:
    from ingest.settings import KafkaSettings

SIGNATURE_HEADER = "X-Orbitwatch-Signature"
"""``sha256=<hex HMAC-SHA256 of the body, keyed by the hook's secret>``."""
TIMESTAMP_HEADER = "X-Orbitwatch-Timestamp"
"""Unix seconds when the request was sent (sent only with a signature)."""
USER_AGENT = "orbitwatch-alerting"
_MAX_DETAIL = 300


class Hook(Protocol):
    """Delivers one notification; raises DeliveryError (with a clear message) when it could not."""

    @property
    def name(self) -> str:
        """The hook's declared name (``DeliveryError.hook``)."""
        ...

    def deliver(self, body: bytes, notification: Notification) -> None:
        """Send ``body`` (``payload.encode`` of the notification's Alertmanager body) once."""
        ...


def close_hook(hook: Hook) -> None:
    """Release what ``hook`` holds (HTTP connections, a Kafka producer), if it holds anything."""
    close = getattr(hook, "close", None)
    if callable(close):
        close()


def backoff_s(attempt: int, base_s: float = 1.0, cap_s: float = 300.0, jitter: float = 0.0) -> float:
    """Seconds to wait before the next delivery attempt after ``attempt`` failed ones (0: none yet, no wait).

    ``base_s * 2 ** (attempt - 1)``, at most ``cap_s``. ``jitter`` in [0, 1] takes a random fraction of up
    to ``jitter`` off (1: "full jitter", uniform in [0, delay]) so that many notifications failing together
    do not retry together; with ``jitter=0`` the result is deterministic and non-decreasing in ``attempt``.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base_s <= 0 or cap_s < 0:
        raise ValueError(f"base_s must be positive and cap_s non-negative, got {base_s} and {cap_s}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be within [0, 1], got {jitter}")
    if attempt == 0:
        return 0.0
    delay = min(cap_s, base_s * 2.0 ** min(attempt - 1, 64))  # the exponent's bound keeps the float finite
    if jitter:
        delay *= 1.0 - jitter * random.random()  # spreads retries; not cryptographic
    return delay


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


class WebhookHook:
    """POSTs the JSON to ``url``: 2xx is delivered; any other status, a transport error or a timeout is not.

    With ``hmac_secret`` every request carries ``X-Orbitwatch-Signature: sha256=<hex HMAC-SHA256 of the
    body>`` and ``X-Orbitwatch-Timestamp`` (Unix seconds). Redirects are not followed (a 3xx fails, so a
    signed body never goes where it was not configured to). ``timeout_s`` bounds connecting, each read and
    each write. One ``httpx.Client`` (connection pool) serves every call; ``close()`` releases it.
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        hmac_secret: str | SecretStr | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        name: str = "webhook",
    ) -> None:
        self.name = name
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:  # the URL itself is not repeated: it may hold a token
            raise DeliveryError(name, f"webhook URL is invalid: {exc}", attempts=0) from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise DeliveryError(
                name,
                f"webhook URL must be http:// or https:// with a host (got scheme {parsed.scheme!r}, "
                f"host {parsed.host!r})",
                attempts=0,
            )
        if timeout_s <= 0:
            raise DeliveryError(name, f"webhook timeout_s must be positive, got {timeout_s}", attempts=0)
        self.url = url
        self.timeout_s = timeout_s
        # Errors name the URL without credentials or query (which may hold a token).
        port = f":{parsed.port}" if parsed.port else ""
        self.display_url = f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"
        secret = hmac_secret.get_secret_value() if isinstance(hmac_secret, SecretStr) else hmac_secret
        self._secret = secret.encode() if secret else None
        own = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        reserved = {h.lower() for h in (*own, SIGNATURE_HEADER, TIMESTAMP_HEADER)}
        self._headers = {**{k: v for k, v in (headers or {}).items() if k.lower() not in reserved}, **own}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False)

    def __repr__(self) -> str:
        return f"WebhookHook({self.name!r}, {self.display_url!r}, signed={self._secret is not None})"

    def signature_headers(self, body: bytes, now: float | None = None) -> dict[str, str]:
        """The signature headers of ``body`` (none without a secret)."""
        if self._secret is None:
            return {}
        digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        return {SIGNATURE_HEADER: f"sha256={digest}", TIMESTAMP_HEADER: str(int(time.time() if now is None else now))}

    def deliver(self, body: bytes, notification: Notification) -> None:
        """One POST; DeliveryError with the status and reason, or the transport error."""
        headers = {**self._headers, **self.signature_headers(body)}
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryError(
                self.name, f"POST {self.display_url}: no answer within {self.timeout_s:g} s ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(self.name, f"POST {self.display_url}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            detail = _shorten(response.text)
            raise DeliveryError(
                self.name,
                f"POST {self.display_url}: HTTP {response.status_code} {response.reason_phrase}"
                + (f": {detail}" if detail else ""),
            )

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()


class CommandHook:
    """Runs ``argv`` (no shell) with the JSON on stdin; exit code 0 is delivered.

    The command inherits the environment plus ``ORBITWATCH_ALERT_STATUS``, ``ORBITWATCH_ALERT_RECEIVER`` and
    ``ORBITWATCH_ALERT_GROUP_KEY``. It runs in its own process group: after ``timeout_s`` the whole group
    (the command and whatever it started) is killed. Its stdout is discarded; the last line of its stderr
    goes into the DeliveryError.
    """

    def __init__(self, argv: Sequence[str], timeout_s: float = 10.0, *, name: str = "command") -> None:
        self.name = name
        if not argv or not argv[0]:
            raise DeliveryError(name, "command: argv is empty", attempts=0)
        if shutil.which(argv[0]) is None:
            raise DeliveryError(name, f"command {argv[0]!r} is not an executable file or on PATH", attempts=0)
        if timeout_s <= 0:
            raise DeliveryError(name, f"command timeout_s must be positive, got {timeout_s}", attempts=0)
        self.argv = list(argv)
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"CommandHook({self.name!r}, {self.argv!r})"

    def deliver(self, body: bytes, notification: Notification) -> None:
        """Run the command once; DeliveryError on a non-zero exit (code and last stderr line) or a timeout."""
        env = {
            **os.environ,
            "ORBITWATCH_ALERT_STATUS": notification.status,
            "ORBITWATCH_ALERT_RECEIVER": notification.receiver,
            "ORBITWATCH_ALERT_GROUP_KEY": notification.group_key,
        }
        name = self.argv[0]
        try:
            process = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise DeliveryError(self.name, f"command {name}: cannot start: {exc.strerror or exc}") from exc
        with process:
            try:
                _, stderr = process.communicate(body, timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                stderr = _kill_group(process)
                raise DeliveryError(
                    self.name,
                    f"command {name}: did not finish within {self.timeout_s:g} s, killed" + _last_line(stderr),
                ) from None
        code = process.returncode
        if code == 0:
            return
        if code < 0:
            try:
                what = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"killed by signal {-code}"
        else:
            what = f"exit code {code}"
        raise DeliveryError(self.name, f"command {name}: {what}" + _last_line(stderr))


def _kill_group(process: subprocess.Popen[bytes]) -> bytes:
    """SIGKILL the process group of ``process`` and return the stderr it wrote."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    try:
        _, stderr = process.communicate(timeout=2.0)
    except subprocess.TimeoutExpired:  # something left the group and holds the pipe: stop reading
        process.kill()
        process.wait()
        return b""
    return stderr or b""


def _last_line(stderr: bytes | None) -> str:
    lines = (stderr or b"").decode("utf-8", "replace").strip().splitlines()
    return f"; stderr: {_shorten(lines[-1])}" if lines else ""


class PythonHook:
    """Calls ``package.module:function`` (imported once, at construction) with the decoded JSON body.

    Returning is delivered; an exception is a DeliveryError. The function runs on the caller's thread and
    cannot be interrupted, so it must bound its own waiting.
    """

    def __init__(self, target: str, *, name: str = "python") -> None:
        self.name = name

        def unusable(message: str) -> DeliveryError:
            return DeliveryError(name, f"python target {target!r}: {message}", attempts=0)

        module_name, _, attribute = target.partition(":")
        if not module_name or not attribute:
            raise unusable("not of the form 'package.module:function'")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise unusable(f"cannot import {module_name}: {exc}") from exc
        except Exception as exc:
            raise unusable(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
        found: object = module
        for part in attribute.split("."):
            try:
                found = getattr(found, part)
            except AttributeError as exc:
                raise unusable(f"module {module_name} has no attribute {attribute}") from exc
        if not callable(found):
            raise unusable(f"{attribute} is a {type(found).__name__}, not a function")
        if inspect.iscoroutinefunction(found):
            raise unusable(f"{attribute} is async; give a plain function")
        self.target = target
        self._function: Callable[[dict[str, Any]], object] = found

    def __repr__(self) -> str:
        return f"PythonHook({self.name!r}, {self.target!r})"

    def deliver(self, body: bytes, notification: Notification) -> None:
        """Call the function with a fresh ``dict`` of the body; DeliveryError if it raises."""
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise DeliveryError(self.name, f"the body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise DeliveryError(self.name, "the body is not a JSON object")
        try:
            self._function(payload)
        except Exception as exc:
            raise DeliveryError(self.name, f"{self.target} raised {type(exc).__name__}: {exc}") from exc


class MessageSink(Protocol):
    """What the Kafka hook sends through (``ingest.sink.KafkaSink``)."""

    def send(self, key: bytes, value: bytes, timeout_s: float) -> None:
        """Send one keyed message, blocking until acknowledged; raises an ``IngestError``."""
        ...

    def close(self) -> None:
        """Release the producer."""
        ...


class KafkaHook:
    """Produces the JSON to the sink's topic keyed by the group key (one group stays on one partition)."""

    def __init__(self, sink: MessageSink, timeout_s: float = 10.0, *, name: str = "kafka") -> None:
        self.name = name
        if timeout_s <= 0:
            raise DeliveryError(name, f"Kafka timeout_s must be positive, got {timeout_s}", attempts=0)
        self.sink = sink
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"KafkaHook({self.name!r}, {self.sink!r})"

    def deliver(self, body: bytes, notification: Notification) -> None:
        """Send once and wait for the acks; DeliveryError with the sink's reason."""
        try:
            self.sink.send(notification.group_key.encode(), body, self.timeout_s)
        except IngestError as exc:
            raise DeliveryError(self.name, str(exc)) from exc

    def close(self) -> None:
        """Close the sink's producer."""
        self.sink.close()


class HookSettings(BaseModel):
    """Fields every hook kind accepts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The retry policy of the hook's notifications: read by the outbox worker (``backoff_s(attempt,
    # base_s=backoff_s)``), accepted here so a rules file's hook settings validate as one block.
    max_attempts: int | None = Field(None, ge=1, description="give up after this many attempts (outbox)")
    backoff_s: float | None = Field(None, gt=0, description="first retry delay, doubling (outbox)")


class WebhookHookSettings(HookSettings):
    """Settings of a ``webhook`` hook; the HMAC secret is given inline or, better, by environment variable."""

    url: str
    timeout_s: float = Field(5.0, gt=0)
    hmac_secret: SecretStr | None = None
    hmac_secret_env: str | None = Field(None, min_length=1, description="variable holding the HMAC secret")
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookHookSettings:
        if self.hmac_secret is not None and self.hmac_secret_env is not None:
            raise ValueError("give hmac_secret or hmac_secret_env, not both")
        return self

    def secret(self) -> SecretStr | None:
        """The HMAC secret, read from ``hmac_secret_env`` if named there; AlertingError if it is unset."""
        if self.hmac_secret_env is None:
            return self.hmac_secret
        value = os.environ.get(self.hmac_secret_env)
        if not value:
            raise AlertingError(f"hmac_secret_env: environment variable {self.hmac_secret_env} is not set")
        return SecretStr(value)


class CommandHookSettings(HookSettings):
    """Settings of a ``command`` hook."""

    argv: list[str] = Field(min_length=1)
    timeout_s: float = Field(10.0, gt=0)


class PythonHookSettings(HookSettings):
    """Settings of a ``python`` hook (``target``, also accepted as ``callable``)."""

    target: str = Field(
        min_length=1, validation_alias=AliasChoices("target", "callable"), description="package.module:function"
    )


class KafkaHookSettings(HookSettings):
    """Settings of a ``kafka`` hook; security fields are named as in ``[kafka]``.

    Without ``bootstrap_servers`` the hook uses the ingest ``[kafka]`` cluster and credentials (when
    ``build_hook`` is given them), writing to ``topic``.
    """

    bootstrap_servers: str | None = None
    topic: str = Field(min_length=1)
    timeout_s: float = Field(10.0, gt=0)
    client_id: str = "orbitwatch-alerts"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None
    producer: dict[str, Any] = Field(default_factory=dict, description="other kafka-python KafkaProducer settings")

    def producer_config(self) -> dict[str, Any]:
        """kafka-python keyword arguments (secrets stay ``SecretStr`` until the producer is created)."""
        config: dict[str, Any] = {"client_id": self.client_id, "security_protocol": self.security_protocol}
        renamed = {"sasl_username": "sasl_plain_username", "sasl_password": "sasl_plain_password"}
        for name in ("sasl_mechanism", "sasl_username", "sasl_password", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                config[renamed.get(name, name)] = value
        if self.ssl_password is not None:
            config["ssl_password"] = self.ssl_password
        return {**config, **self.producer}


class AlertmanagerHookSettings(HookSettings):
    """Settings of an ``alertmanager`` hook (see ``alerting.alertmanager``)."""

    urls: list[str] = Field(min_length=1, description="Alertmanager base URLs, e.g. http://127.0.0.1:9093")
    timeout_s: float = Field(5.0, gt=0)
    resend_interval_s: float = Field(
        60.0, gt=0, description="firing alerts are re-sent this often; Alertmanager expires them after 4x"
    )
    generator_url: str = Field(
        "", description="link sent as generatorURL; {fingerprint}, {rule} and {rack_id} are filled in"
    )
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_placeholders(self) -> AlertmanagerHookSettings:
        try:
            self.generator_url.format(fingerprint="", rule="", rack_id="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"generator_url: only {{fingerprint}}, {{rule}}, {{rack_id}} may be used ({exc})") from exc
        return self


def _webhook(settings: WebhookHookSettings, name: str, kafka: KafkaSettings | None) -> Hook:
    return WebhookHook(settings.url, settings.timeout_s, settings.secret(), settings.headers, name=name)


def _command(settings: CommandHookSettings, name: str, kafka: KafkaSettings | None) -> Hook:
    return CommandHook(settings.argv, settings.timeout_s, name=name)


def _python(settings: PythonHookSettings, name: str, kafka: KafkaSettings | None) -> Hook:
    return PythonHook(settings.target, name=name)


def _kafka(settings: KafkaHookSettings, name: str, kafka: KafkaSettings | None) -> Hook:
    from ingest.sink import KafkaSink  # imports kafka: only when a Kafka hook is configured

    try:
        if settings.bootstrap_servers is not None:
            sink = KafkaSink(settings.bootstrap_servers, settings.topic, **settings.producer_config())
        elif kafka is not None:
            sink = KafkaSink.from_settings(kafka, settings.topic, **settings.producer)
        else:
            raise AlertingError("missing field 'bootstrap_servers' (and no [kafka] settings to default to)")
    except IngestError as exc:
        raise DeliveryError(name, str(exc), attempts=0) from exc
    return KafkaHook(sink, settings.timeout_s, name=name)


def _alertmanager(settings: AlertmanagerHookSettings, name: str, kafka: KafkaSettings | None) -> Hook:
    from alerting.alertmanager import AlertmanagerHook

    return AlertmanagerHook(
        settings.urls,
        timeout_s=settings.timeout_s,
        resend_interval_s=settings.resend_interval_s,
        generator_url=settings.generator_url,
        headers=settings.headers,
        name=name,
    )


_KINDS: dict[str, tuple[type[HookSettings], Callable[[Any, str, KafkaSettings | None], Hook]]] = {
    "webhook": (WebhookHookSettings, _webhook),
    "command": (CommandHookSettings, _command),
    "python": (PythonHookSettings, _python),
    "kafka": (KafkaHookSettings, _kafka),
    "alertmanager": (AlertmanagerHookSettings, _alertmanager),
}
HOOK_KINDS = tuple(_KINDS)


def hook_settings(kind: str, settings: Mapping[str, Any], name: str | None = None) -> HookSettings:
    """The validated settings of a hook of ``kind``; AlertingError naming every bad or missing field."""
    label = f"alert hook {name!r} ({kind})" if name else f"alert hook {kind!r}"
    if kind not in _KINDS:
        raise AlertingError(f"{label}: unknown kind {kind!r}; expected one of {', '.join(HOOK_KINDS)}")
    try:
        return _KINDS[kind][0].model_validate(dict(settings))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            if error["type"] == "missing":
                problems.append(f"missing field {field!r}")
            elif error["type"] == "extra_forbidden":
                problems.append(f"unknown field {field!r}")
            else:
                problems.append(f"{field}: {error['msg']}")
        raise AlertingError(f"{label}: " + "; ".join(problems)) from exc


def build_hook(
    kind: str, settings: Mapping[str, Any], name: str | None = None, *, kafka: KafkaSettings | None = None
) -> Hook:
    """The hook of ``kind`` (``webhook``, ``command``, ``python``, ``kafka``, ``alertmanager``) from its settings.

    ``name`` (default: the kind) is the hook's declared name, carried by its DeliveryErrors; ``kafka``, the
    ingest ``[kafka]`` settings, lets a Kafka hook without ``bootstrap_servers`` use that cluster. Unknown
    kinds and missing, unknown or invalid fields raise AlertingError naming them; a hook that cannot work
    as configured (bad URL, missing executable, unimportable function) raises DeliveryError with
    ``attempts=0``.
    """
    parsed = hook_settings(kind, settings, name)
    try:
        return _KINDS[kind][1](parsed, name or kind, kafka)
    except DeliveryError:
        raise
    except AlertingError as exc:
        label = f"alert hook {name!r} ({kind})" if name else f"alert hook {kind!r}"
        raise AlertingError(f"{label}: {exc}") from exc
