"""Alert rules files for tests: a module's own rules, plus the standard hook and catch-all route."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_rules(
    directory: Path,
    rules_yaml: str,
    *,
    webhook_url: str | None = None,
    timeout_s: float = 2,
    hook_name: str = "pager",
    hook_kind: str = "webhook",
    hook_settings: Mapping[str, Any] | None = None,
    name: str = "rules.yaml",
) -> Path:
    """Write ``directory/name`` (``rules.yaml``) and return its path.

    The file is ``rules_yaml`` (the ``rules:`` section, as is) and, when ``webhook_url`` is given, one
    hook ``hook_name`` of kind ``webhook`` with ``settings: {url: webhook_url, timeout_s: timeout_s}``
    and a route sending every notification (``match: {}``) to it. ``hook_settings`` instead gives the
    hook's whole settings (for another ``hook_kind``, e.g. ``alertmanager``).
    """
    if webhook_url is not None and hook_settings is not None:
        raise ValueError("give webhook_url or hook_settings, not both")
    text = rules_yaml if rules_yaml.endswith("\n") else rules_yaml + "\n"
    settings = {"url": webhook_url, "timeout_s": timeout_s} if webhook_url is not None else hook_settings
    if settings is not None:
        # JSON is YAML: a flow mapping, its strings double-quoted
        text += (
            f"hooks:\n  - name: {hook_name}\n    kind: {hook_kind}\n    settings: {json.dumps(dict(settings))}\n"
            f"routes:\n  - match: {{}}\n    hook: {hook_name}\n"
        )
    path = directory / name
    path.write_text(text)
    return path
