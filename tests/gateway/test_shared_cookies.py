"""Handshake cookies shared by the gateway workers of one server."""

from __future__ import annotations

import pytest

from fleetgate.gateway import cookies
from fleetgate.gateway.cookies import SharedCookieJar

SECRET = bytes(range(32))
PEER = ("192.0.2.7", 40000)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1_000_000.0]
    monkeypatch.setattr(cookies.time, "time", lambda: now[0])
    return now


def test_cookie_checks_in_another_jar(clock: list[float]) -> None:
    issued = SharedCookieJar(SECRET).issue(PEER)
    assert SharedCookieJar(SECRET).check(PEER, issued)


def test_cookie_fails_under_another_secret(clock: list[float]) -> None:
    issued = SharedCookieJar(SECRET).issue(PEER)
    assert not SharedCookieJar(bytes(32)).check(PEER, issued)


def test_cookie_fails_for_another_address(clock: list[float]) -> None:
    jar = SharedCookieJar(SECRET)
    assert not jar.check(("192.0.2.7", 40001), jar.issue(PEER))


def test_cookie_lasts_one_more_period(clock: list[float]) -> None:
    jar = SharedCookieJar(SECRET, rotate_seconds=60)
    issued = jar.issue(PEER)
    clock[0] += 60
    assert jar.check(PEER, issued)


def test_cookie_expires_after_two_periods(clock: list[float]) -> None:
    jar = SharedCookieJar(SECRET, rotate_seconds=60)
    issued = jar.issue(PEER)
    clock[0] += 120
    assert not jar.check(PEER, issued)


def test_checked_cookie_expires_after_two_periods(clock: list[float]) -> None:
    jar = SharedCookieJar(SECRET, rotate_seconds=60)
    issued = jar.issue(PEER)
    accepted = jar.check(PEER, issued)
    clock[0] += 120

    assert accepted
    assert not jar.check(PEER, issued)


def test_short_master_secret_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SharedCookieJar(b"short")
