"""TrustCache: anchors served from memory, and kept through a store outage."""

from __future__ import annotations

import pytest

from fleetgate.errors import StoreUnavailable
from fleetgate.gateway.trust import TrustCache
from fleetgate.pki.verify import ProjectTrust, VerificationPolicy


class FlakyLoader:
    """Loads an empty trust, or raises StoreUnavailable while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def __call__(self, project_id: str) -> ProjectTrust | None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("cannot access the database: refused")
        return ProjectTrust(anchors=(), policy=VerificationPolicy())


def test_outage_serves_last_anchors() -> None:
    loader = FlakyLoader()
    cache = TrustCache(loader, ttl=0.0)
    before = cache.anchors_for("acme")
    loader.down = True

    during = cache.anchors_for("acme")

    assert during is before
    assert loader.calls == 2


def test_outage_without_entry_raises() -> None:
    loader = FlakyLoader()
    loader.down = True
    cache = TrustCache(loader)

    with pytest.raises(StoreUnavailable):
        cache.anchors_for("acme")


def test_outage_reloads_once_per_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("fleetgate.gateway.trust.time.monotonic", lambda: now[0])
    loader = FlakyLoader()
    cache = TrustCache(loader, ttl=2.0)
    cache.anchors_for("acme")
    loader.down = True

    now[0] = 3.0
    for _ in range(10):
        cache.anchors_for("acme")
    calls_in_first_window = loader.calls
    now[0] = 6.0
    cache.anchors_for("acme")

    assert calls_in_first_window == 2
    assert loader.calls == 3
