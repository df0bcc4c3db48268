"""The production install: the wheel in a clean virtual environment without dev extras runs the product.

This is what ``deploy/Dockerfile`` does (``pip install .``): build the wheel, install it with its runtime
dependencies only, then use the installed ``orbitwatch`` for real: its own embedded broker, ``orbitwatch
run`` with an alert rules file on a small simulated fleet (a webhook hook posting to a local server), and
``orbitwatch query``. A runtime import of a dev-only package (pytest, hypothesis, mypy, ...) fails it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingest.admin import create_topic
from ingest.settings import DEFAULT_CONTRACT_DIR
from orbitwatch.broker import free_port
from simulator.config import FaultSpec, SimulationConfig
from simulator.messages import generate
from simulator.produce import produce
from tests.helpers.rules import write_rules
from tests.helpers.web import WebProcess
from tests.helpers.webhook import WebhookReceiver

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEV_ONLY = ["pytest", "hypothesis", "mypy", "ruff", "kubernetes_validate", "xdist"]
FLEET = SimulationConfig(
    satellites=1,
    racks_per_satellite=2,
    duration_s=6 * 60,
    contact="continuous",
    seed=5,
    malformed_rate=0.01,
    faults=[FaultSpec(kind="gpu_overheat", satellite=0, rack=1, node=1, gpu=2, start_s=60, duration_s=240)],
)
RULES = """
rules:
  - name: gpu_temperature
    scope: gpu
    threshold: {column: temp_max, op: ">=", warning: 83, critical: 90}
"""


@pytest.fixture
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtual environment with the orbitwatch wheel and its runtime dependencies only."""
    work = tmp_path_factory.mktemp("packaging")
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(REPO)],
        check=True,
        cwd=work,
    )
    wheels = list(dist.glob("orbitwatch-*.whl"))
    assert len(wheels) == 1, wheels
    venv = work / "venv"
    # No pip of its own (ensurepip costs 8 s): this test environment's pip installs into it (``--python``),
    # without compiling the dependencies' bytecode up front (13 s instead of 28 s; the runs compile what
    # they import).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet"]
    subprocess.run([*install, "--no-compile", str(wheels[0])], check=True, cwd=work)
    return venv


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """A real HTTP server recording the notifications posted to it."""
    with WebhookReceiver() as receiver:
        yield receiver


def test_the_installed_package_ingests_alerts_and_answers(
    installed: Path, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """The installed ``orbitwatch``: broker, run with a rules file, query; every frame stored once."""
    bin_dir = installed / "bin"
    for module in DEV_ONLY:  # the clean environment really lacks the dev extras, else this proves nothing
        command: list[str | Path] = [bin_dir / "python", "-c", f"import {module}"]
        assert subprocess.run(command, check=False, capture_output=True).returncode != 0, f"{module} is installed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORBITWATCH_")}
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "ORBITWATCH_REGISTRY__CONTRACT_DIR": str(DEFAULT_CONTRACT_DIR),  # as the container image does
        }
    )
    for args in (["--help"], ["run", "--help"], ["query", "--help"]):
        shown = subprocess.run([bin_dir / "orbitwatch", *args], check=False, env=env, capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
    served = (
        "from importlib import resources; import json; print(len(json.loads(resources.files('orbitwatch')"
        ".joinpath('openapi.json').read_text())['paths']))"
    )
    shipped = subprocess.run([bin_dir / "python", "-c", served], check=False, capture_output=True, text=True)
    assert (shipped.returncode, shipped.stdout.strip()) == (0, "7"), shipped.stderr  # /v1/openapi.json's file
    port = free_port()
    broker = subprocess.Popen(
        [bin_dir / "orbitwatch", "broker", "--port", str(port)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert broker.stdout is not None
        assert "broker listening" in broker.stdout.readline()
        servers = f"127.0.0.1:{port}"
        create_topic(servers, "telemetry", 2)
        messages, truth = generate(FLEET, DEFAULT_CONTRACT_DIR)
        produce(messages, servers, "telemetry")
        rules = write_rules(tmp_path, RULES, webhook_url=webhook.url)
        db = tmp_path / "history.duckdb"
        env.update(
            {
                "ORBITWATCH_KAFKA__BOOTSTRAP_SERVERS": servers,
                "ORBITWATCH_KAFKA__TOPIC": "telemetry",
                "ORBITWATCH_KAFKA__SESSION_TIMEOUT_MS": "4000",
                "ORBITWATCH_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
                "ORBITWATCH_STORAGE__PATH": str(db),
                "ORBITWATCH_ALERTING__RULES_FILE": str(rules),
                "ORBITWATCH_DAEMON__METRICS_PORT": "null",
                "ORBITWATCH_QUERY__PORT": "0",
            }
        )
        began = time.monotonic()
        run = subprocess.run(
            [bin_dir / "orbitwatch", "run", "--exit-when-idle", "4"],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Traceback" not in run.stderr
        assert time.monotonic() - began < 180
        answer = subprocess.run(
            [
                bin_dir / "orbitwatch",
                "query",
                "--format",
                "json",
                "SELECT (SELECT count(*) FROM rack_frames) AS frames, (SELECT count(*) FROM dead_letters) AS dead,"
                " (SELECT count(*) FROM alert_outbox) AS notifications",
            ],
            check=False,
            env=env,
            capture_output=True,
            text=True,
        )
        assert answer.returncode == 0, answer.stderr
        counts = json.loads(answer.stdout)[0]
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.communicate(timeout=20)
    assert counts["frames"] == truth.distinct_frames_sent
    assert counts["dead"] == truth.malformed_sent
    assert counts["notifications"] >= 1
    assert webhook.json_bodies(), "the webhook got no notification"
    # The web view from the wheel: its templates, stylesheet, scripts and Plotly all ship in the packages.
    with WebProcess(tmp_path / "web.log", "--db", str(db), env=env, program=[str(bin_dir / "orbitwatch")]) as web:
        for path in ("/fleet", "/alerts", "/tenants", "/static/app.css", "/static/rack.js", "/vendor/plotly.min.js"):
            assert httpx.get(f"{web.url}{path}", timeout=30).status_code == 200, path
