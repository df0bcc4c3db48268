"""The schema registry (file and a real HTTP Confluent-style registry) and Kafka security settings."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ingest.errors import SchemaRegistryError
from ingest.registry import SchemaRegistry
from ingest.settings import DEFAULT_CONTRACT_DIR
from ingest.source import consumer_config
from orbitwatch.errors import ConfigError
from orbitwatch.settings import load_settings

V2 = (DEFAULT_CONTRACT_DIR / "rack_frame_v2.avsc").read_text()


class _Registry(BaseHTTPRequestHandler):
    """Answers GET /schemas/ids/{id}: 7 is the v2 schema, 500 fails, anything else is 404."""

    calls: list[str] = []  # noqa: RUF012  # shared across handler instances on purpose

    def do_GET(self) -> None:
        _Registry.calls.append(self.path)
        if self.path == "/schemas/ids/7":
            body, status = json.dumps({"schema": V2}).encode(), 200
        elif self.path == "/schemas/ids/500":
            body, status = b"{}", 500
        else:
            body, status = b'{"error_code": 40403}', 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def registry_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Registry.calls.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_file_registry_knows_both_versions_and_reads_with_the_newest() -> None:
    registry = SchemaRegistry(DEFAULT_CONTRACT_DIR)
    assert registry.reader.schema_id == 2
    v1 = registry.get(1)
    assert v1 is not None
    assert "firmware" not in {f["name"] for f in v1.raw["fields"]}
    assert registry.get(99) is None


def test_registry_url_answers_unknown_ids_once_each(registry_url: str) -> None:
    registry = SchemaRegistry(DEFAULT_CONTRACT_DIR, url=registry_url)
    fetched = registry.get(7)
    assert fetched is not None
    assert fetched.schema_id == 7
    assert registry.get(7) is fetched
    assert registry.get(8) is None
    assert registry.get(8) is None
    assert registry.get(1) is not None  # from the file, never asked
    assert _Registry.calls == ["/schemas/ids/7", "/schemas/ids/8"]
    with pytest.raises(SchemaRegistryError, match="answered 500"):
        registry.get(500)


def test_unreachable_registry_and_broken_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SchemaRegistryError, match="unreachable"):
        SchemaRegistry(DEFAULT_CONTRACT_DIR, url="http://127.0.0.1:9", timeout_s=0.5).get(42)
    (tmp_path / "registry.json").write_text('{"1": "missing.avsc"}')
    with pytest.raises(SchemaRegistryError, match="cannot read schema registry"):
        SchemaRegistry(tmp_path)
    (tmp_path / "registry.json").write_text('{"1": "bad.avsc"}')
    (tmp_path / "bad.avsc").write_text('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}')
    with pytest.raises(SchemaRegistryError, match="not a valid Avro schema"):
        SchemaRegistry(tmp_path)


def test_sasl_and_tls_settings_reach_the_consumer_with_secrets_unwrapped(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    settings = load_settings(
        None,
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "ground",
            "sasl_password": "s3cret",
            "ssl_cafile": str(ca),
        },
    )
    assert "s3cret" not in repr(settings)
    config = consumer_config(settings.kafka)
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "ground"
    assert config["sasl_plain_password"] == "s3cret"
    assert config["ssl_cafile"] == str(ca)
    assert config["enable_auto_commit"] is False


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs sasl_mechanism, sasl_username and sasl_password"):
        load_settings(None, kafka={"security_protocol": "SASL_PLAINTEXT"})
