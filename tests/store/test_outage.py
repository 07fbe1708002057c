"""OutageMonitor: one line per outage start, rate-limited repeats, one at the end."""

from __future__ import annotations

import logging

import pytest

from fleetgate.store.outage import OutageMonitor


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_first_failure_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    monitor = OutageMonitor(interval=30.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="fleetgate.store.outage"):
        for _ in range(1000):
            monitor.failed("connection refused")
            clock.now += 0.01

    assert monitor.down
    assert len(caplog.records) == 1
    assert caplog.records[0].levelno == logging.ERROR
    assert "database unavailable reason=store_unavailable" in messages(caplog)[0]


def test_repeats_summarised_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    monitor = OutageMonitor(interval=30.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="fleetgate.store.outage"):
        monitor.failed("refused")
        for _ in range(9):
            clock.now += 1.0
            monitor.failed("refused")
        clock.now += 25.0
        monitor.failed("refused")

    lines = messages(caplog)
    assert len(lines) == 2
    assert "database still unavailable" in lines[1]
    assert "seconds=34" in lines[1]
    assert "failures_since_last_line=9" in lines[1]


def test_recovery_logged_with_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    monitor = OutageMonitor(interval=30.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="fleetgate.store.outage"):
        monitor.succeeded()
        for _ in range(3):
            monitor.failed("refused")
        clock.now += 2.5
        monitor.succeeded()
        monitor.succeeded()

    lines = messages(caplog)
    assert not monitor.down
    assert len(lines) == 2
    assert "database available again reason=store_recovered" in lines[1]
    assert "seconds=2.5 failures=3" in lines[1]


def test_new_outage_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    monitor = OutageMonitor(clock=FakeClock())
    with caplog.at_level(logging.DEBUG, logger="fleetgate.store.outage"):
        monitor.failed("refused")
        monitor.succeeded()
        monitor.failed("refused")

    lines = messages(caplog)
    assert [line.split(" reason=")[0] for line in lines] == [
        "database unavailable",
        "database available again",
        "database unavailable",
    ]


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        OutageMonitor(interval=0)
