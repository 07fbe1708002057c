"""Manufacturing manifests: parsing, all-or-nothing import, report, requirement."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from fleetgate import provisioning
from fleetgate.errors import DeviceRejected, InvalidInput, NotFound, Reason
from fleetgate.store import connections, devices, manifests, projects
from fleetgate.store.database import Database
from fleetgate.store.manifests import ManifestInvalid

PROJECT = "acme"
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def project(database: Database) -> str:
    projects.create_project(database, PROJECT)
    return PROJECT


def _import(db: Database, text: str, batch: str | None = "b1") -> None:
    rows = manifests.parse_manifest(text.encode(), batch=batch)
    manifests.import_manifest(db, PROJECT, rows, actor="test")


def _connect(db: Database, certificate_id: str) -> provisioning.AssociatedDevice:
    return provisioning.associate(
        db,
        project_id=PROJECT,
        certificate_id=certificate_id,
        fingerprint="ab" * 32,
        not_after=NOW + dt.timedelta(days=30),
        now=NOW,
    )


def test_csv_rows_keep_serial_and_hardware_id() -> None:
    rows = manifests.parse_manifest(
        b"certificate_id,serial,hardware_id\nsn-1,0001,mac-1\nsn-2,,\n", batch="b1"
    )

    assert [row.certificate_id for row in rows] == ["sn-1", "sn-2"]
    assert rows[0].serial == "0001"
    assert rows[0].hardware_id == "mac-1"
    assert rows[1].serial is None
    assert rows[0].batch == "b1"


def test_json_rows_accept_camel_case() -> None:
    content = json.dumps([{"certificateId": "sn-1", "batch": "b2"}]).encode()

    (row,) = manifests.parse_manifest(content)

    assert row.certificate_id == "sn-1"
    assert row.batch == "b2"


def test_bad_rows_are_named_by_line() -> None:
    content = b"certificate_id,batch\nsn-1,b1\nbad id,b1\nsn-3,\nsn-1,b1\n"

    with pytest.raises(ManifestInvalid) as caught:
        manifests.parse_manifest(content)

    problems = caught.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("line 3:")
    assert problems[1].startswith("line 4: batch is missing")
    assert problems[2].startswith("line 5: certificate ID 'sn-1' is also on line 2")
    assert "3 of 4 rows are invalid, so nothing was imported" in caught.value.message


def test_row_of_other_batch_is_invalid() -> None:
    with pytest.raises(ManifestInvalid, match="line 2: batch 'b9' differs"):
        manifests.parse_manifest(b"certificate_id,batch\nsn-1,b9\n", batch="b1")


def test_unknown_column_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="line 1 must be a header"):
        manifests.parse_manifest(b"certificate_id,colour\nsn-1,red\n", batch="b1")


def test_invalid_import_stores_nothing(database: Database, project: str) -> None:
    with pytest.raises(ManifestInvalid):
        _import(database, "certificate_id\nsn-1\nsn 2\n")

    assert manifests.list_batches(database, project) == []


def test_id_listed_in_other_batch_stores_nothing(
    database: Database, project: str
) -> None:
    _import(database, "certificate_id\nsn-1\n", batch="b1")

    with pytest.raises(ManifestInvalid, match="line 3: .*already listed in batch"):
        _import(database, "certificate_id\nsn-2\nsn-1\n", batch="b2")

    assert [s.batch for s in manifests.list_batches(database, project)] == ["b1"]


def test_import_again_updates_batch(database: Database, project: str) -> None:
    _import(database, "certificate_id\nsn-1\n")
    _import(database, "certificate_id,serial\nsn-1,42\nsn-2,43\n")

    (summary,) = manifests.list_batches(database, project)

    assert summary.entries == 2


def test_delete_batch_removes_entries(database: Database, project: str) -> None:
    _import(database, "certificate_id\nsn-1\nsn-2\n")

    deleted = manifests.delete_batch(database, project, "b1", actor="test")

    assert deleted == 2
    assert manifests.list_batches(database, project) == []


def test_delete_missing_batch_is_not_found(database: Database, project: str) -> None:
    with pytest.raises(NotFound):
        manifests.delete_batch(database, project, "nope", actor="test")


def test_report_lists_unlisted_and_never_seen(database: Database, project: str) -> None:
    _import(database, "certificate_id\nsn-1\nsn-2\n")
    _connect(database, "sn-1")
    _connect(database, "stranger")

    report = manifests.manifest_report(database, project)

    assert report.unlisted == ["stranger"]
    assert report.never_seen == [("b1", "sn-2")]


def test_report_lists_clone_suspects(database: Database, project: str) -> None:
    _import(database, "certificate_id\nsn-1\n")
    device = _connect(database, "sn-1")
    connections.write_events(
        database,
        [
            connections.NewConnectionEvent(
                project_id=PROJECT,
                peer="127.0.0.1:4000",
                other_peer="127.0.0.2:5000",
                result=connections.ConnectionResult.CLONE_SUSPECTED,
                created_at=NOW,
                certificate_id="sn-1",
                device_id=device.device_id,
            )
        ],
    )

    (suspect,) = manifests.manifest_report(database, project).clone_suspects

    assert suspect.certificate_id == "sn-1"
    assert set(suspect.addresses) == {"127.0.0.1:4000", "127.0.0.2:5000"}


def test_required_manifest_rejects_unlisted(database: Database, project: str) -> None:
    _import(database, "certificate_id\nsn-1\n")
    manifests.set_require_manifest(database, project, True, actor="test")

    with pytest.raises(DeviceRejected) as caught:
        _connect(database, "stranger")

    assert caught.value.reason is Reason.NOT_IN_MANIFEST
    assert devices.list_devices(database, project).total == 0


def test_required_manifest_creates_listed(database: Database, project: str) -> None:
    _import(database, "certificate_id\nsn-1\n")
    manifests.set_require_manifest(database, project, True, actor="test")

    assert _connect(database, "sn-1").created


def test_required_manifest_keeps_existing_devices(
    database: Database, project: str
) -> None:
    first = _connect(database, "old-1")
    devices.create_device(database, project, "pre-1")
    manifests.set_require_manifest(database, project, True, actor="test")

    again = _connect(database, "old-1")
    adopted = _connect(database, "pre-1")

    assert again.device_id == first.device_id
    assert adopted.adopted
