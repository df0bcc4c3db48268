"""The web view's server side over a real history file: pages, escaping, refusals, CSV, live events.

The history is written by the real writer (``HistoryWriter`` with ``DerivedTables``) from simulated frames;
the application is served by ``orbitwatch web``'s own server (waitress on the HTTP edge) on a free port.
The browser's view of the same pages, against a daemon, is ``tests/integration/test_web_view.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingest.codec import FrameDecoder
from orbitwatch import assemble
from orbitwatch.broker import free_port
from orbitwatch.discovery import discovery_path
from orbitwatch.query_service import QueryService
from orbitwatch.settings import WebSettings
from orbitwatch.web.server import WebServer
from orbitwatch.web.sources import HistorySource, ServiceSource
from processing.rows import prepare_batch
from simulator.codec import ContractCodec
from simulator.config import FaultSpec, SimulationConfig
from simulator.messages import generate
from storage.database import open_database
from storage.derived import DerivedTables
from storage.guarded import QueryLimits
from storage.writer import HistoryWriter
from tests.helpers.frames import raw_batch, registry

MARKUP = 'sat-0009/<b>rack</b><script>alert("x")</script>'
FLEET = SimulationConfig(
    satellites=2,
    racks_per_satellite=1,
    duration_s=6 * 60,
    contact="continuous",
    seed=5,
    faults=[FaultSpec(kind="gpu_overheat", satellite=1, rack=0, node=1, gpu=2, start_s=60, duration_s=600)],
)


def write_history(path: Path, satellite: str | None = None) -> None:
    """``FLEET`` and one frame of a rack whose id is markup, through the daemon's writer; with ``satellite``,
    only that satellite's racks of ``FLEET`` instead."""
    con = open_database(path)
    writer = HistoryWriter(con, DerivedTables(con))
    decoder = FrameDecoder(registry())
    messages = list(generate(FLEET)[0])
    codec_messages = [(m.key, m.value, m.timestamp_ms) for m in messages]
    codec = ContractCodec()
    if satellite is not None:
        codec_messages = [m for m in codec_messages if m[0].startswith(satellite.encode())]
    else:
        schema_id, record = codec.decode(messages[-1].value)
        record["rack_id"], record["frame_seq"] = MARKUP, 0
        codec_messages.append((MARKUP.encode(), codec.encode(schema_id, record), messages[-1].timestamp_ms))
    for start in range(0, len(codec_messages), 500):
        chunk = codec_messages[start : start + 500]
        raw = raw_batch(
            [v for _, v, _ in chunk],
            first_offset=start,
            timestamps_ms=[t for _, _, t in chunk],
            keys=[k for k, _, _ in chunk],
        )
        decoded = decoder.decode(raw)
        writer.write(assemble.to_store(raw, decoded, prepare_batch(decoded.frames)))
    con.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A history file with three racks, one of them overheating."""
    path = tmp_path_factory.mktemp("web") / "orbitwatch.duckdb"
    write_history(path)
    return path


@pytest.fixture
def web(history: Path) -> Iterator[str]:
    """``orbitwatch web``'s server over the file read-only, with a token for actions; yields its URL."""
    server = WebServer([HistorySource(history)], WebSettings(token="t0ken", poll_interval_s=0.1))
    port = server.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_the_fleet_page_shows_every_rack_coloured_by_its_state_and_escapes_rack_ids(web: str) -> None:
    page = httpx.get(f"{web}/fleet")
    assert page.status_code == 200
    html = page.text
    assert 'data-rack="sat-0002/rack-1" data-state="critical"' in html
    assert 'data-rack="sat-0001/rack-1" data-state="ok"' in html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "<b>rack</b>" not in html
    assert httpx.get(f"{web}/fragment/fleet").text.count('class="rack state-') == 3


def test_the_rack_page_and_its_data_name_the_minutes_and_the_thresholds(web: str) -> None:
    page = httpx.get(f"{web}/rack", params={"id": "sat-0002/rack-1", "range": "1h"})
    assert page.status_code == 200
    assert 'data-state="critical"' in page.text
    data = httpx.get(f"{web}/api/rack", params={"id": "sat-0002/rack-1", "range": "1h"}).json()
    assert [row["window_start"][14:16] for row in data["series"]] == ["00", "01", "02", "03", "04", "05"]
    assert data["series"][0]["window_start"].endswith("+00:00")  # ISO 8601, not RFC 822
    hot = [row["temp_max"] >= 90 for row in data["series"]]
    assert hot == [False, True, True, True, True, True]
    assert len(data["gpus"]) == 64
    assert data["thresholds"]["temp_max"] == {"degraded": 83.0, "critical": 90.0}
    markup = httpx.get(f"{web}/rack", params={"id": MARKUP})
    assert markup.status_code == 200
    assert "<script>alert" not in markup.text


@pytest.mark.parametrize(
    ("path", "status"),
    [("/rack", 400), ("/rack?id=nope", 404), ("/api/rack?id=nope", 404), ("/tenants?bucket=week", 400), ("/x", 404)],
)
def test_bad_requests_get_a_4xx_never_a_traceback(web: str, path: str, status: int) -> None:
    answer = httpx.get(f"{web}{path}")
    assert answer.status_code == status
    assert "Traceback" not in answer.text
    if path.startswith("/api/"):
        assert answer.json()["error"] == "Not Found"


def test_actions_need_json_the_same_origin_and_the_token(web: str) -> None:
    body = {"fingerprint": "abc", "requested_by": "ops", "shard": 0}
    auth = {"Authorization": "Bearer t0ken"}
    assert httpx.post(f"{web}/api/alerts/ack", data={"fingerprint": "abc"}, headers=auth).status_code == 415
    assert httpx.post(f"{web}/api/alerts/ack", json=body).status_code == 401
    assert httpx.post(f"{web}/api/alerts/ack", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    foreign = {**auth, "Origin": "http://evil.example"}
    assert httpx.post(f"{web}/api/alerts/ack", json=body, headers=foreign).status_code == 403
    assert httpx.post(f"{web}/api/alerts/ack", json={**body, "requested_by": " "}, headers=auth).status_code == 400
    assert httpx.post(f"{web}/api/alerts/ack", json={**body, "minutes": 0}, headers=auth).status_code == 400
    assert httpx.post(f"{web}/api/alerts/launch", json=body, headers=auth).status_code == 404
    read_only = httpx.post(f"{web}/api/alerts/ack", json=body, headers=auth)
    assert read_only.status_code == 409  # no daemon: the file is open read-only
    assert "orbitwatch alerts ack" in read_only.json()["message"]


def test_tenant_usage_per_hour_downloads_as_csv(web: str) -> None:
    answer = httpx.get(f"{web}/tenants.csv", params={"range": "24h", "bucket": "hour"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    lines = answer.text.splitlines()
    assert lines[0] == "tenant,period,gpu_hours"
    assert len(lines) > 1
    page = httpx.get(f"{web}/tenants", params={"range": "24h"})
    assert page.status_code == 200


def test_every_asset_comes_from_the_installed_packages(web: str) -> None:
    html = httpx.get(f"{web}/rack", params={"id": "sat-0001/rack-1"}).text
    assert "http://" not in html.replace(web, "")
    assert "https://" not in html
    plotly = httpx.get(f"{web}/vendor/plotly.min.js")
    assert plotly.status_code == 200
    assert len(plotly.content) > 1_000_000
    assert httpx.get(f"{web}/static/live.js").status_code == 200


def test_a_change_of_the_history_reaches_an_open_page_as_an_event(web: str, history: Path) -> None:
    received: list[str] = []

    def listen() -> None:
        with httpx.stream("GET", f"{web}/events", timeout=10) as stream:
            for line in stream.iter_lines():
                received.append(line)
                if line.startswith("data:"):
                    return

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(0.5)  # the stream is open and the watcher has seen the file once
    stat = history.stat()
    touched = time.monotonic()
    os.utime(history, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    listener.join(timeout=10)
    assert "event: update" in received
    assert time.monotonic() - touched < 2.0


def test_one_page_shows_the_racks_of_every_shard(tmp_path: Path) -> None:
    shards = [tmp_path / "shard0.duckdb", tmp_path / "shard1.duckdb"]
    write_history(shards[0], "sat-0001")
    write_history(shards[1], "sat-0002")
    server = WebServer([HistorySource(path) for path in shards], WebSettings())
    port = server.start("127.0.0.1", 0)
    try:
        html = httpx.get(f"http://127.0.0.1:{port}/fleet").text
        assert 'data-rack="sat-0001/rack-1" data-state="ok"' in html
        assert 'data-rack="sat-0002/rack-1" data-state="critical"' in html
        assert "2 shards" in html
        rack = httpx.get(f"http://127.0.0.1:{port}/api/rack", params={"id": "sat-0002/rack-1"}).json()
        assert rack["now"]["shard"] == 1
        assert len(rack["series"]) == 6
    finally:
        server.stop()


def test_a_shard_that_does_not_answer_is_named_and_the_others_are_shown(history: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    server = WebServer([HistorySource(history), ServiceSource(dead, timeout_s=2)], WebSettings())
    port = server.start("127.0.0.1", 0)
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/fleet")
        assert page.status_code == 200
        assert 'data-rack="sat-0002/rack-1" data-state="critical"' in page.text
        assert f"Shard <code>{dead}</code> did not answer" in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/alerts").status_code == 200
    finally:
        server.stop()
    only_dead = WebServer([ServiceSource(dead, timeout_s=2)], WebSettings())
    port = only_dead.start("127.0.0.1", 0)
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/fleet")
        assert page.status_code == 502
        assert dead in page.text
        assert "Traceback" not in page.text
    finally:
        only_dead.stop()


def test_the_file_is_released_when_idle_and_a_daemon_starting_on_it_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "orbitwatch.duckdb"
    write_history(path, "sat-0002")
    source = HistorySource(path, idle_close_s=0.3)
    server = WebServer([source], WebSettings())
    port = server.start("127.0.0.1", 0)
    queried: list[str] = []
    try:
        assert 'data-state="critical"' in httpx.get(f"http://127.0.0.1:{port}/fleet").text
        deadline = time.monotonic() + 5
        while source.open_read_only and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not source.open_read_only, "an idle web view must not keep the file from its daemon"
        con = open_database(path)  # what a daemon starting now does: it gets the file
        service = QueryService(con, QueryLimits(), observe=lambda outcome, _s: queried.append(outcome))
        service.serve("127.0.0.1", 0, discovery_path(path))
        try:
            deadline = time.monotonic() + 5  # the watcher sees the daemon's version within a poll or two
            while not queried and time.monotonic() < deadline:
                assert 'data-state="critical"' in httpx.get(f"http://127.0.0.1:{port}/fleet").text
                time.sleep(0.1)
            assert queried, "the page was read through the daemon's service"
            assert not source.open_read_only
        finally:
            service.stop()
            con.close()
    finally:
        server.stop()


def test_the_command_explains_itself_and_refuses_a_remote_address_without_a_token(tmp_path: Path) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "orbitwatch.cli", "web", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--url" in help_text
    assert "air-gapped" in help_text
    remote = subprocess.run(
        [sys.executable, "-m", "orbitwatch.cli", "web", "--host", "0.0.0.0", "--db", str(tmp_path / "x.duckdb")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert remote.returncode == 1
    assert "web.host" in remote.stderr
    assert "Traceback" not in remote.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "orbitwatch.cli", "web", "--db", str(tmp_path / "absent.duckdb")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "absent.duckdb" in missing.stderr


def test_a_live_slot_comes_back_when_a_page_leaves_before_its_first_event(history: Path) -> None:
    from orbitwatch.web.errors import TooManyPages
    from orbitwatch.web.live import LiveUpdates
    from orbitwatch.web.sources import Fleet

    live = LiveUpdates(Fleet([HistorySource(history)]), poll_interval_s=60, max_clients=1)
    first = live.stream()
    with pytest.raises(TooManyPages):
        live.stream()
    first.close()  # what the WSGI server does when the page went away: no event was ever read
    second = live.stream()
    assert next(iter(second)) == b"retry: 2000\n\n"
    second.close()
    live.stream().close()
