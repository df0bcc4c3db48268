"""The discovery file ``<db>.query.json``: where the daemon writing a history answers queries, for
``orbitwatch query`` and the web view to find it."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from orbitwatch.errors import DiscoveryFileError


def url_host(host: str) -> str:
    """``host`` as it goes into a URL that a client on this machine can reach."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def write_discovery(path: Path, url: str, token_required: bool) -> None:
    """Write ``<db>.query.json`` atomically: where the running daemon answers queries."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "token_required": token_required}))
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # e.g. its directory is not one
            tmp.unlink(missing_ok=True)
        raise DiscoveryFileError(
            f"cannot write {path} (where `orbitwatch query` finds the running daemon): {exc.strerror or exc}"
        ) from exc


def discovery_path(db_path: Path) -> Path:
    """Where a daemon writing ``db_path`` advertises its query service."""
    return db_path.with_name(db_path.name + ".query.json")
