"""Cookie lifetime across idle spells of the listener's CookieJar."""

from __future__ import annotations

import time

from fleetgate.gateway import records

ADDRESS = ("127.0.0.1", 5000)
PERIOD = 0.05


def test_cookie_survives_one_rotation() -> None:
    jar = records.CookieJar(rotate_seconds=PERIOD)
    cookie = jar.issue(ADDRESS)

    time.sleep(PERIOD * 1.2)

    assert jar.check(ADDRESS, cookie)


def test_cookie_expires_after_idle_spell() -> None:
    # No traffic for two periods or more: the cookie is older than the
    # two periods a cookie may live, although the jar rotated only once.
    jar = records.CookieJar(rotate_seconds=PERIOD)
    cookie = jar.issue(ADDRESS)

    time.sleep(PERIOD * 2.5)

    assert not jar.check(ADDRESS, cookie)
    assert jar.check(ADDRESS, jar.issue(ADDRESS))
