"""Settings of the ``alertmanager`` hook; the hook itself is ``alerting.alertmanager.AlertmanagerHook``."""

from __future__ import annotations

from pydantic import Field, model_validator

from alerting.alertmanager import AlertmanagerHook
from alerting.hooks.base import HookSettings


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


def alertmanager_hook(settings: AlertmanagerHookSettings, name: str) -> AlertmanagerHook:
    """The Alertmanager hook ``name`` configured by ``settings``."""
    return AlertmanagerHook(
        settings.urls,
        timeout_s=settings.timeout_s,
        resend_interval_s=settings.resend_interval_s,
        generator_url=settings.generator_url,
        headers=settings.headers,
        name=name,
    )
