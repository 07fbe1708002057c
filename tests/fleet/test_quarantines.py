"""Quarantines: chains recorded at association, disable and exact restore."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import event

from fleetgate import provisioning
from fleetgate.errors import Conflict, InvalidInput, NotFound
from fleetgate.pki import tools
from fleetgate.pki.identity import fingerprint
from fleetgate.store import audit, certificates, devices, manifests, quarantines
from fleetgate.store.database import Database
from fleetgate.store.models import Device

from .pki import PROJECT, ProjectPki

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def pki(database: Database) -> ProjectPki:
    return ProjectPki(database)


def _connect(
    pki: ProjectPki,
    certificate_id: str,
    *,
    via_intermediate: bool,
    now: dt.datetime = NOW,
) -> str:
    chain = pki.device(certificate_id, via_intermediate=via_intermediate)
    cas = [pki.intermediate, pki.root] if via_intermediate else [pki.root]
    return provisioning.associate(
        pki.db,
        project_id=PROJECT,
        certificate_id=certificate_id,
        fingerprint=fingerprint(chain[0]),
        not_after=chain[0].not_valid_after_utc,
        now=now,
        ca_chain=provisioning.chain_cas(cas, [fingerprint(ca) for ca in cas]),
    ).device_id


def _enabled(db: Database) -> dict[str, bool]:
    return {d.name: d.enabled for d in devices.list_devices(db, PROJECT).items}


def _batch(db: Database, *certificate_ids: str, name: str = "b1") -> None:
    text = "certificate_id\n" + "".join(f"{cid}\n" for cid in certificate_ids)
    rows = manifests.parse_manifest(text.encode(), batch=name)
    manifests.import_manifest(db, PROJECT, rows, actor="test")


def test_association_records_ca_chain(pki: ProjectPki) -> None:
    device_id = _connect(pki, "sensor-1", via_intermediate=True)

    record = devices.get_device(pki.db, PROJECT, device_id)
    with pki.db.session(read_only=True) as session:
        row = session.get(Device, device_id)
        assert row is not None
        chain = row.ca_chain or []

    assert record.enabled
    assert [ca["fingerprint"] for ca in chain] == [
        fingerprint(pki.intermediate),
        fingerprint(pki.root),
    ]
    assert chain[0]["subject"] == "CN=Fleet Intermediate"


def test_unchanged_chain_is_not_written_again(pki: ProjectPki) -> None:
    chain = pki.device("sensor-1")
    cas = provisioning.chain_cas([pki.root], [fingerprint(pki.root)])
    arguments = dict(
        project_id=PROJECT,
        certificate_id="sensor-1",
        fingerprint=fingerprint(chain[0]),
        not_after=chain[0].not_valid_after_utc,
        ca_chain=cas,
    )
    provisioning.associate(pki.db, now=NOW, **arguments)  # type: ignore[arg-type]
    updates: list[str] = []
    listener = lambda *args: updates.append(str(args[2]))  # noqa: E731
    event.listen(pki.db.engine, "before_cursor_execute", listener)
    try:
        provisioning.associate(
            pki.db,
            now=NOW + dt.timedelta(seconds=5),
            **arguments,  # type: ignore[arg-type]
        )
    finally:
        event.remove(pki.db.engine, "before_cursor_execute", listener)

    assert not [sql for sql in updates if sql.lstrip().upper().startswith("UPDATE")]


def test_batch_quarantine_disables_and_release_restores(pki: ProjectPki) -> None:
    for name in ("a", "b", "c"):
        _connect(pki, name, via_intermediate=False)
    _batch(pki.db, "a", "b")

    started = quarantines.start_quarantine(pki.db, PROJECT, batch="b1", actor="test")
    during = _enabled(pki.db)
    released = quarantines.release_quarantine(pki.db, PROJECT, started.id, actor="t")

    assert during == {"a": False, "b": False, "c": True}
    assert len(released.device_ids) == 2
    assert _enabled(pki.db) == {"a": True, "b": True, "c": True}


def test_release_skips_device_disabled_before(pki: ProjectPki) -> None:
    ids = {name: _connect(pki, name, via_intermediate=False) for name in ("a", "b")}
    devices.set_device_enabled(pki.db, PROJECT, ids["a"], False)
    _batch(pki.db, "a", "b")

    started = quarantines.start_quarantine(pki.db, PROJECT, batch="b1", actor="test")
    quarantines.release_quarantine(pki.db, PROJECT, started.id, actor="test")

    assert started.device_ids == (ids["b"],)
    assert _enabled(pki.db) == {"a": False, "b": True}


def test_release_skips_device_disabled_by_hand_during(pki: ProjectPki) -> None:
    ids = {name: _connect(pki, name, via_intermediate=False) for name in ("a", "b")}
    _batch(pki.db, "a", "b")
    started = quarantines.start_quarantine(pki.db, PROJECT, batch="b1", actor="test")

    devices.set_device_enabled(pki.db, PROJECT, ids["a"], False)
    quarantines.release_quarantine(pki.db, PROJECT, started.id, actor="test")

    assert _enabled(pki.db) == {"a": False, "b": True}


def test_ca_quarantine_matches_intermediate_only(pki: ProjectPki) -> None:
    _connect(pki, "via-intermediate", via_intermediate=True)
    _connect(pki, "direct", via_intermediate=False)

    started = quarantines.start_quarantine(
        pki.db,
        PROJECT,
        ca_fingerprint=fingerprint(pki.intermediate).upper(),
        actor="test",
    )

    assert len(started.device_ids) == 1
    assert _enabled(pki.db) == {"via-intermediate": False, "direct": True}


def test_overlapping_quarantines_restore_on_last_release(pki: ProjectPki) -> None:
    _connect(pki, "a", via_intermediate=True)
    _batch(pki.db, "a")
    by_batch = quarantines.start_quarantine(pki.db, PROJECT, batch="b1", actor="t")
    by_ca = quarantines.start_quarantine(
        pki.db, PROJECT, ca_fingerprint=fingerprint(pki.intermediate), actor="t"
    )

    first = quarantines.release_quarantine(pki.db, PROJECT, by_batch.id, actor="t")
    still = _enabled(pki.db)
    second = quarantines.release_quarantine(pki.db, PROJECT, by_ca.id, actor="t")

    assert first.device_ids == ()
    assert still == {"a": False}
    assert len(second.device_ids) == 1
    assert _enabled(pki.db) == {"a": True}


def test_release_twice_is_conflict(pki: ProjectPki) -> None:
    _connect(pki, "a", via_intermediate=False)
    _batch(pki.db, "a")
    started = quarantines.start_quarantine(pki.db, PROJECT, batch="b1", actor="t")
    quarantines.release_quarantine(pki.db, PROJECT, started.id, actor="t")

    with pytest.raises(Conflict):
        quarantines.release_quarantine(pki.db, PROJECT, started.id, actor="t")


def test_start_and_release_are_audited(pki: ProjectPki) -> None:
    _connect(pki, "a", via_intermediate=False)
    _batch(pki.db, "a")
    started = quarantines.start_quarantine(pki.db, PROJECT, batch="b1", actor="t")
    quarantines.release_quarantine(pki.db, PROJECT, started.id, actor="t")

    actions = [e.action for e in audit.list_audit_entries(pki.db, PROJECT).items]

    assert actions[:2] == ["quarantine.release", "quarantine.start"]


def test_bad_fingerprint_is_invalid(pki: ProjectPki) -> None:
    with pytest.raises(InvalidInput, match="64 hex digits"):
        quarantines.start_quarantine(pki.db, PROJECT, ca_fingerprint="abc", actor="t")


def test_unknown_batch_is_not_found(pki: ProjectPki) -> None:
    with pytest.raises(NotFound):
        quarantines.start_quarantine(pki.db, PROJECT, batch="none", actor="t")


def test_other_project_quarantine_is_not_found(pki: ProjectPki) -> None:
    _connect(pki, "a", via_intermediate=False)
    _batch(pki.db, "a")
    started = quarantines.start_quarantine(pki.db, PROJECT, batch="b1", actor="t")
    ProjectPki(pki.db, "other")

    with pytest.raises(NotFound):
        quarantines.release_quarantine(pki.db, "other", started.id, actor="t")


def _connect_anchored_at_intermediate(pki: ProjectPki, certificate_id: str) -> str:
    """Associate a device verified against the registered intermediate."""
    chain = pki.device(certificate_id, via_intermediate=True)
    return provisioning.associate(
        pki.db,
        project_id=PROJECT,
        certificate_id=certificate_id,
        fingerprint=fingerprint(chain[0]),
        not_after=chain[0].not_valid_after_utc,
        now=NOW,
        ca_chain=provisioning.chain_cas(
            [pki.intermediate], [fingerprint(pki.intermediate)]
        ),
    ).device_id


def test_root_quarantine_includes_registered_intermediate(pki: ProjectPki) -> None:
    certificates.add_ca_certificate(
        pki.db, PROJECT, pki.intermediate.public_bytes(Encoding.PEM)
    )
    _connect_anchored_at_intermediate(pki, "under-intermediate")
    _connect(pki, "direct", via_intermediate=False)

    started = quarantines.start_quarantine(
        pki.db, PROJECT, ca_fingerprint=fingerprint(pki.root), actor="test"
    )

    assert len(started.device_ids) == 2
    assert _enabled(pki.db) == {"under-intermediate": False, "direct": False}


def test_root_quarantine_skips_same_name_other_issuer(pki: ProjectPki) -> None:
    # Named like the intermediate under the root, but issued by another
    # key: only the signature tells them apart.
    other_key, other_root = tools.make_root("Fleet Root", days=3650)
    _, impostor = tools.make_intermediate(
        other_key, other_root, "Fleet Intermediate", days=365
    )
    certificates.add_ca_certificate(
        pki.db, PROJECT, impostor.public_bytes(Encoding.PEM)
    )
    chain = pki.device("impostor-device", via_intermediate=False)
    provisioning.associate(
        pki.db,
        project_id=PROJECT,
        certificate_id="impostor-device",
        fingerprint=fingerprint(chain[0]),
        not_after=chain[0].not_valid_after_utc,
        now=NOW,
        ca_chain=provisioning.chain_cas([impostor], [fingerprint(impostor)]),
    )

    started = quarantines.start_quarantine(
        pki.db, PROJECT, ca_fingerprint=fingerprint(pki.root), actor="test"
    )

    assert started.device_ids == ()
    assert _enabled(pki.db) == {"impostor-device": True}


def test_unknown_ca_fingerprint_is_not_found(pki: ProjectPki) -> None:
    _connect(pki, "a", via_intermediate=False)

    with pytest.raises(NotFound, match="no registered CA certificate"):
        quarantines.start_quarantine(
            pki.db, PROJECT, ca_fingerprint="0" * 64, actor="t"
        )
    assert _enabled(pki.db) == {"a": True}


def test_registered_ca_without_devices_quarantines_none(pki: ProjectPki) -> None:
    started = quarantines.start_quarantine(
        pki.db, PROJECT, ca_fingerprint=fingerprint(pki.root), actor="t"
    )

    assert started.device_ids == ()
