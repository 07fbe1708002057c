"""TrustCache: anchors served from memory, and kept through a store outage."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from fleetgate.errors import StoreUnavailable
from fleetgate.gateway.trust import TrustCache
from fleetgate.pki import tools
from fleetgate.pki.verify import ProjectTrust, VerificationPolicy
from fleetgate.store import certificates
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project


class FlakyLoader:
    """Loads an empty trust and its version, or raises StoreUnavailable
    while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def __call__(self, project_id: str) -> ProjectTrust | None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("cannot access the database: refused")
        return ProjectTrust(anchors=(), policy=VerificationPolicy())

    def version(self, project_id: str) -> int:
        if self.down:
            raise StoreUnavailable("cannot access the database: refused")
        return 1


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


class CountingVersion:
    """Returns ``value``, counting the reads."""

    def __init__(self) -> None:
        self.value = 1
        self.calls = 0

    def __call__(self, project_id: str) -> int:
        self.calls += 1
        return self.value


def test_unchanged_version_skips_reload() -> None:
    loader = FlakyLoader()
    version = CountingVersion()
    cache = TrustCache(loader, ttl=0.0, version=version)
    before = cache.anchors_for("acme")

    after = cache.anchors_for("acme")

    assert after is before
    assert loader.calls == 1
    assert version.calls == 2


def test_changed_version_reloads() -> None:
    loader = FlakyLoader()
    version = CountingVersion()
    cache = TrustCache(loader, ttl=0.0, version=version)
    before = cache.anchors_for("acme")
    version.value = 2

    after = cache.anchors_for("acme")

    assert after is not before
    assert loader.calls == 2


def test_invalidate_reloads_despite_version() -> None:
    loader = FlakyLoader()
    cache = TrustCache(loader, ttl=0.0, version=CountingVersion())
    cache.anchors_for("acme")
    cache.invalidate("acme")

    cache.anchors_for("acme")

    assert loader.calls == 2


def test_version_outage_serves_last_anchors() -> None:
    loader = FlakyLoader()
    cache = TrustCache(loader, ttl=0.0, version=loader.version)
    before = cache.anchors_for("acme")
    loader.down = True

    during = cache.anchors_for("acme")

    assert during is before


def test_store_version_sees_ca_disable(database: Database) -> None:
    create_project(database, "acme")
    _, root = tools.make_root("Root")
    pem = root.public_bytes(Encoding.PEM)
    record = certificates.add_ca_certificate(database, "acme", pem)
    cache = TrustCache(
        lambda project: certificates.trust_for(database, project),
        ttl=0.0,
        version=lambda project: certificates.trust_version(database, project),
    )
    cache.anchors_for("acme")
    certificates.set_ca_certificate_enabled(database, "acme", record.id, False)

    trust = cache.anchors_for("acme")

    assert trust is not None
    assert trust.anchors == ()
