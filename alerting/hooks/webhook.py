"""The ``webhook`` hook: one HTTP POST of the JSON per attempt, optionally signed with HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping

import httpx
from pydantic import Field, SecretStr, model_validator

from alerting.errors import AlertingError, DeliveryError
from alerting.hooks.base import HookSettings, shorten
from alerting.payload import Notification

SIGNATURE_HEADER = "X-Orbitwatch-Signature"
"""``sha256=<hex HMAC-SHA256 of the body, keyed by the hook's secret>``."""
TIMESTAMP_HEADER = "X-Orbitwatch-Timestamp"
"""Unix seconds when the request was sent (sent only with a signature)."""
USER_AGENT = "orbitwatch-alerting"


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
            detail = shorten(response.text)
            raise DeliveryError(
                self.name,
                f"POST {self.display_url}: HTTP {response.status_code} {response.reason_phrase}"
                + (f": {detail}" if detail else ""),
            )

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()


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


def webhook_hook(settings: WebhookHookSettings, name: str) -> WebhookHook:
    """The webhook hook ``name`` configured by ``settings``."""
    return WebhookHook(settings.url, settings.timeout_s, settings.secret(), settings.headers, name=name)
