"""Builds the hooks a rules file declares: ``build_hook(kind, settings, name)`` for every kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from alerting.errors import AlertingError, DeliveryError
from alerting.hooks.alertmanager_settings import AlertmanagerHookSettings, alertmanager_hook
from alerting.hooks.base import Hook, HookSettings
from alerting.hooks.command import CommandHookSettings, command_hook
from alerting.hooks.kafka import KafkaHookSettings, kafka_hook
from alerting.hooks.python_function import PythonHookSettings, python_hook
from alerting.hooks.webhook import WebhookHookSettings, webhook_hook

if TYPE_CHECKING:
    from ingest.settings import KafkaSettings

_SETTINGS: dict[str, type[HookSettings]] = {
    "webhook": WebhookHookSettings,
    "command": CommandHookSettings,
    "python": PythonHookSettings,
    "kafka": KafkaHookSettings,
    "alertmanager": AlertmanagerHookSettings,
}
HOOK_KINDS = tuple(_SETTINGS)
"""The kinds ``build_hook`` knows, in the order error messages list them."""


def _label(kind: str, name: str | None) -> str:
    return f"alert hook {name!r} ({kind})" if name else f"alert hook {kind!r}"


def hook_settings(kind: str, settings: Mapping[str, Any], name: str | None = None) -> HookSettings:
    """The validated settings of a hook of ``kind``; AlertingError naming every bad or missing field."""
    label = _label(kind, name)
    if kind not in _SETTINGS:
        raise AlertingError(f"{label}: unknown kind {kind!r}; expected one of {', '.join(HOOK_KINDS)}")
    try:
        return _SETTINGS[kind].model_validate(dict(settings))
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


def _construct(settings: HookSettings, name: str, kafka: KafkaSettings | None) -> Hook:
    """The hook ``settings`` describe (their class says which kind)."""
    match settings:
        case WebhookHookSettings():
            return webhook_hook(settings, name)
        case CommandHookSettings():
            return command_hook(settings, name)
        case PythonHookSettings():
            return python_hook(settings, name)
        case KafkaHookSettings():
            return kafka_hook(settings, name, kafka)
        case AlertmanagerHookSettings():
            return alertmanager_hook(settings, name)
    raise AssertionError(f"no builder for {type(settings).__name__}")  # pragma: no cover


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
        return _construct(parsed, name or kind, kafka)
    except DeliveryError:
        raise
    except AlertingError as exc:
        raise AlertingError(f"{_label(kind, name)}: {exc}") from exc
