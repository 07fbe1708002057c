"""CloneDetector: two live sessions are a clone, a reconnect is not."""

from __future__ import annotations

from fleetgate.gateway.clones import CloneDetector

KEY = ("acme", "sensor-1")
OLD = ("192.0.2.7", 40000)
NEW = ("192.0.2.7", 40001)


class Clock:
    """A monotonic clock that the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def detector(clock: Clock) -> CloneDetector:
    return CloneDetector(window=30.0, grace=2.0, clock=clock)


def opened_pair(clock: Clock) -> CloneDetector:
    """Open the old session, then the new one, and let the new one talk."""
    clones = detector(clock)
    clones.opened(KEY, "old", OLD)
    clones.opened(KEY, "new", NEW)
    clones.traffic(KEY, "new")
    return clones


def test_both_sessions_talking_is_a_clone() -> None:
    clock = Clock()
    clones = detector(clock)
    clones.opened(KEY, "old", OLD)
    clones.traffic(KEY, "old")
    clock.now += 10
    clones.opened(KEY, "new", NEW)
    clones.traffic(KEY, "new")

    clock.now += 5
    clashes = clones.traffic(KEY, "old")

    assert clashes == [NEW]


def test_silent_old_session_is_a_reconnect() -> None:
    clock = Clock()
    clones = detector(clock)
    clones.opened(KEY, "old", OLD)
    clones.traffic(KEY, "old")
    clock.now += 10
    clones.opened(KEY, "new", NEW)

    clashes = []
    for _ in range(10):
        clock.now += 5
        clashes += clones.traffic(KEY, "new")

    assert clashes == []


def test_old_traffic_within_grace_is_ignored() -> None:
    clock = Clock()
    clones = opened_pair(clock)

    clock.now += 1
    clashes = clones.traffic(KEY, "old")

    assert clashes == []


def test_traffic_further_apart_than_window_is_ignored() -> None:
    clock = Clock()
    clones = opened_pair(clock)

    clock.now += 40
    clashes = clones.traffic(KEY, "old")

    assert clashes == []


def test_clone_is_reported_once_per_pair() -> None:
    clock = Clock()
    clones = opened_pair(clock)
    clock.now += 3
    first = clones.traffic(KEY, "old")

    clock.now += 1
    again = clones.traffic(KEY, "new") + clones.traffic(KEY, "old")

    assert first == [NEW]
    assert again == []


def test_same_address_is_no_clone() -> None:
    clock = Clock()
    clones = detector(clock)
    clones.opened(KEY, "old", OLD)
    clones.opened(KEY, "new", OLD)
    clones.traffic(KEY, "new")
    clock.now += 3

    assert clones.traffic(KEY, "old") == []


def test_closed_session_is_forgotten() -> None:
    clock = Clock()
    clones = opened_pair(clock)
    clones.closed(KEY, "new")
    clock.now += 3

    assert clones.traffic(KEY, "old") == []


def test_other_certificate_is_no_clone() -> None:
    clock = Clock()
    clones = detector(clock)
    clones.opened(KEY, "old", OLD)
    clones.opened(("acme", "sensor-2"), "new", NEW)
    clones.traffic(("acme", "sensor-2"), "new")
    clock.now += 3

    assert clones.traffic(KEY, "old") == []
