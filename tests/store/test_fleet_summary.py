"""Fleet figures for the console: device counts."""

from __future__ import annotations

import datetime as dt

import pytest

from fleetgate.errors import NotFound
from fleetgate.store import devices, fleet_summary
from fleetgate.store.database import Database
from fleetgate.store.models import Device
from fleetgate.store.projects import create_project

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, "acme")
    create_project(database, "other")
    return database


def add_device(
    db: Database,
    name: str,
    *,
    project_id: str = "acme",
    last_seen_at: dt.datetime | None = None,
) -> None:
    record = devices.create_device(db, project_id, name)
    with db.session() as session:
        row = session.get(Device, record.id)
        assert row is not None
        row.last_seen_at = last_seen_at


def test_counts_recent_and_never_connected(db: Database) -> None:
    add_device(db, "fresh", last_seen_at=NOW - dt.timedelta(minutes=5))
    add_device(db, "stale", last_seen_at=NOW - dt.timedelta(hours=2))
    add_device(db, "new")
    add_device(db, "theirs", project_id="other", last_seen_at=NOW)

    counts = fleet_summary.count_devices(db, "acme", now=NOW)

    assert counts == fleet_summary.DeviceCounts(
        total=3, connected_recently=1, never_connected=1
    )


def test_missing_project_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        fleet_summary.count_devices(db, "nowhere", now=NOW)
