"""The query service's settings: the HTTP edge's limits, and no remote listener without a token."""

from __future__ import annotations

import inspect

import pytest

from orbitwatch.errors import ConfigError
from orbitwatch.query_service import QueryService
from orbitwatch.settings import QuerySettings, load_settings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "LOCALHOST"])
def test_a_loopback_host_needs_no_token(host: str) -> None:
    assert load_settings(None, query={"host": host}).query.host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.7", "192.168.1.2", "2001:db8::1", "example.org", ""])
def test_a_host_beyond_loopback_without_a_token_is_refused_naming_both_fields(host: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(None, query={"host": host})
    message = str(refused.value)
    assert f"query.host {host!r} is not a loopback address" in message
    assert "set query.token" in message


def test_a_host_beyond_loopback_with_a_token_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORBITWATCH_QUERY__TOKEN", "s3cret")
    settings = load_settings(None, query={"host": "0.0.0.0"})
    assert settings.query.token is not None
    assert settings.query.token.get_secret_value() == "s3cret"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_timeout_s", 0),
        ("request_timeout_s", 1.5),
        ("max_connections", 0),
        ("max_body_bytes", 10),
    ],
)
def test_edge_limits_out_of_range_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"query.{field}"):
        load_settings(None, query={field: value})


def test_the_service_defaults_are_the_settings_defaults() -> None:
    """The daemon may pass the edge limits or not: either way the service runs with the settings' defaults."""
    defaults = QuerySettings()
    parameters = inspect.signature(QueryService).parameters
    for name in ("request_timeout_s", "max_connections", "max_body_bytes"):
        assert parameters[name].default == getattr(defaults, name), name
        assert QuerySettings.model_fields[name].description, name
