"""The ``command`` hook: runs a command (no shell) with the JSON on its stdin, in its own process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence

from pydantic import Field

from alerting.errors import DeliveryError
from alerting.hooks.base import HookSettings, shorten
from alerting.payload import Notification


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
    return f"; stderr: {shorten(lines[-1])}" if lines else ""


class CommandHookSettings(HookSettings):
    """Settings of a ``command`` hook."""

    argv: list[str] = Field(min_length=1)
    timeout_s: float = Field(10.0, gt=0)


def command_hook(settings: CommandHookSettings, name: str) -> CommandHook:
    """The command hook ``name`` configured by ``settings``."""
    return CommandHook(settings.argv, settings.timeout_s, name=name)
