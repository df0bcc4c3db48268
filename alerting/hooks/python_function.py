"""The ``python`` hook: calls ``package.module:function`` in-process with the decoded JSON body."""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from typing import Any

from pydantic import AliasChoices, Field

from alerting.errors import DeliveryError
from alerting.hooks.base import HookSettings
from alerting.payload import Notification


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


class PythonHookSettings(HookSettings):
    """Settings of a ``python`` hook (``target``, also accepted as ``callable``)."""

    target: str = Field(
        min_length=1, validation_alias=AliasChoices("target", "callable"), description="package.module:function"
    )


def python_hook(settings: PythonHookSettings, name: str) -> PythonHook:
    """The python hook ``name`` configured by ``settings``."""
    return PythonHook(settings.target, name=name)
