"""The daemon's background services share one lifecycle: started in order, stopped in reverse, and stopping
what never started is a no-op."""

from __future__ import annotations

import pytest

from orbitwatch.services import Services


class Recorder:
    """A service that records its calls in a shared log, and can be told to fail at start."""

    def __init__(self, name: str, log: list[str], *, fails: bool = False) -> None:
        self.name = name
        self._log = log
        self._fails = fails

    def start(self) -> None:
        if self._fails:
            raise OSError(f"{self.name} cannot start")
        self._log.append(f"start {self.name}")

    def stop(self) -> None:
        self._log.append(f"stop {self.name}")


def test_started_in_order_and_stopped_in_reverse_once() -> None:
    log: list[str] = []
    services = Services()
    for name in ("delivery", "retention", "queries"):
        services.add(Recorder(name, log))
    services.add(None)  # a service the settings do not ask for
    services.start()
    assert services.running
    services.start()  # a second start starts nothing twice
    services.stop()
    services.stop()  # nor does a second stop stop anything twice
    assert log == [
        "start delivery",
        "start retention",
        "start queries",
        "stop queries",
        "stop retention",
        "stop delivery",
    ]
    assert not services.running
    assert services.names == ["delivery", "retention", "queries"]


def test_stopping_services_that_never_started_does_nothing() -> None:
    log: list[str] = []
    services = Services()
    services.add(Recorder("retention", log))
    services.stop()
    assert log == []


def test_a_failing_start_stops_the_ones_started_before_it() -> None:
    log: list[str] = []
    services = Services()
    services.add(Recorder("delivery", log))
    services.add(Recorder("queries", log, fails=True))
    services.add(Recorder("metrics", log))
    with pytest.raises(OSError, match="queries cannot start"):
        services.start()
    assert log == ["start delivery", "stop delivery"]
    assert not services.running


def test_an_error_stopping_one_service_does_not_keep_the_others_running(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []

    class Stuck(Recorder):
        def stop(self) -> None:
            raise RuntimeError("stuck")

    services = Services()
    services.add(Recorder("delivery", log))
    services.add(Stuck("retention", log))
    services.start()
    services.stop()
    assert log == ["start delivery", "start retention", "stop delivery"]
    assert "stopping retention failed" in caplog.text
