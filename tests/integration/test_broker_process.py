"""``orbitwatch broker`` never leaves its Tansu child behind: SIGTERM stops it and waits for it, a SIGKILL
of the wrapper takes the child with it (the kernel's parent-death signal), and a busy port is named."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from orbitwatch.broker import free_port, port_holder

pytestmark = pytest.mark.integration


def start_broker(port: int) -> tuple[subprocess.Popen[str], psutil.Process]:
    """``orbitwatch broker --port PORT`` in the background, once it listens; returns it and its child."""
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "orbitwatch.cli", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert wrapper.stdout is not None
    line = wrapper.stdout.readline()
    assert f"broker listening on 127.0.0.1:{port}" in line, line
    children = psutil.Process(wrapper.pid).children()
    assert len(children) == 1, children
    return wrapper, children[0]


def gone(process: psutil.Process, timeout_s: float = 10.0) -> bool:
    """True once ``process`` has exited (reaped or a zombie of a dead parent counts as exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    """Wrappers to kill at the end, whatever the test's outcome."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for wrapper in started:
        if wrapper.poll() is None:
            wrapper.kill()
        wrapper.communicate()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_stopped_broker_leaves_no_process_and_frees_its_port(
    signum: signal.Signals, cleanup: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    wrapper, child = start_broker(port)
    cleanup.append(wrapper)
    assert port_holder(port) is not None
    wrapper.send_signal(signum)
    out, _ = wrapper.communicate(timeout=20)
    if signum == signal.SIGTERM:
        assert wrapper.returncode == 0
        assert "broker stopped" in out
        assert "Traceback" not in out
    assert gone(child), f"the broker child {child.pid} outlived its wrapper"
    assert port_holder(port) is None
    again, _child = start_broker(port)  # the port can be used again at once
    cleanup.append(again)


def test_a_busy_port_is_named_with_its_holder() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "orbitwatch.cli", "broker", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    assert f"port {port} is in use by pid {os.getpid()}" in done.stderr
    assert "Traceback" not in done.stderr
