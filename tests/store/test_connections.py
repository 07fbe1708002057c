"""The connection log store: batched writes, filtered listing, clones, pruning."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from fleetgate.errors import InvalidInput, NotFound, Reason
from fleetgate.store import connections
from fleetgate.store.connections import ConnectionResult, NewConnectionEvent
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, "acme")
    create_project(database, "other")
    return database


def event(
    result: ConnectionResult = ConnectionResult.ACCEPTED,
    *,
    project_id: str = "acme",
    certificate_id: str = "sensor-1",
    reason: str | None = None,
    peer: str = "192.0.2.7:40112",
    other_peer: str | None = None,
    created_at: dt.datetime = NOW,
) -> NewConnectionEvent:
    return NewConnectionEvent(
        project_id=project_id,
        peer=peer,
        result=result,
        created_at=created_at,
        reason=reason,
        certificate_id=certificate_id,
        fingerprint="ab" * 32,
        other_peer=other_peer,
    )


def test_written_events_list_newest_first(db: Database) -> None:
    connections.write_events(
        db,
        [
            event(),
            event(ConnectionResult.REJECTED, reason=Reason.UNKNOWN_CA),
        ],
    )

    listed = connections.list_events(db, "acme")

    assert [e.result for e in listed] == ["rejected", "accepted"]
    assert listed[0].reason == "unknown_ca"
    assert listed[0].created_at == NOW


def test_written_event_keeps_every_field(db: Database) -> None:
    written = NewConnectionEvent(
        project_id="acme",
        peer="192.0.2.7:40112",
        result=ConnectionResult.CLONE_SUSPECTED,
        created_at=NOW,
        reason=Reason.CLONE_SUSPECTED,
        certificate_id="sensor-1",
        device_id="dev-1",
        fingerprint="ab" * 32,
        other_peer="198.51.100.3:2000",
    )
    connections.write_events(db, [written, event()])

    stored = connections.list_events(db, "acme", result="clone_suspected")[0]

    for field in dataclasses.fields(NewConnectionEvent):
        assert getattr(stored, field.name) == getattr(written, field.name), field.name


def test_events_of_missing_project_are_skipped(db: Database) -> None:
    written = connections.write_events(
        db, [event(project_id="nowhere"), event(project_id="acme")]
    )

    assert written == 1


def test_filters_select_result_reason_and_certificate(db: Database) -> None:
    connections.write_events(
        db,
        [
            event(),
            event(ConnectionResult.REJECTED, reason=Reason.EXPIRED),
            event(ConnectionResult.REJECTED, reason=Reason.UNKNOWN_CA),
            event(certificate_id="sensor-2"),
        ],
    )

    rejected = connections.list_events(db, "acme", result="rejected")
    expired = connections.list_events(db, "acme", reason="expired")
    second = connections.list_events(db, "acme", certificate_id="sensor-2")

    assert len(rejected) == 2
    assert [e.reason for e in expired] == ["expired"]
    assert [e.certificate_id for e in second] == ["sensor-2"]
    assert connections.count_events(db, "acme", result="rejected") == 2


def test_before_id_continues_the_listing(db: Database) -> None:
    connections.write_events(db, [event() for _ in range(5)])

    first = connections.list_events(db, "acme", limit=2)
    rest = connections.list_events(db, "acme", limit=10, before_id=first[-1].id)

    assert len(rest) == 3
    assert max(e.id for e in rest) < min(e.id for e in first)


def test_other_project_sees_no_events(db: Database) -> None:
    connections.write_events(db, [event()])

    assert connections.list_events(db, "other") == []


def test_missing_project_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        connections.list_events(db, "nowhere")


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"result": "opened"}, id="fail/unknown-result"),
        pytest.param({"reason": "bad_luck"}, id="fail/unknown-reason"),
        pytest.param({"limit": 0}, id="fail/zero-limit"),
        pytest.param({"limit": 1001}, id="fail/limit-too-large"),
    ],
)
def test_invalid_filters_are_rejected(db: Database, options: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        connections.list_events(db, "acme", **options)  # type: ignore[arg-type]


def test_clone_suspects_merge_addresses(db: Database) -> None:
    connections.write_events(
        db,
        [
            event(
                ConnectionResult.CLONE_SUSPECTED,
                reason=Reason.CLONE_SUSPECTED,
                peer="192.0.2.7:1000",
                other_peer="198.51.100.3:2000",
            ),
            event(
                ConnectionResult.CLONE_SUSPECTED,
                reason=Reason.CLONE_SUSPECTED,
                peer="203.0.113.9:3000",
                other_peer="192.0.2.7:1000",
                created_at=NOW + dt.timedelta(minutes=1),
            ),
            event(),
        ],
    )

    [suspect] = connections.clone_suspects(db, "acme")

    assert suspect.certificate_id == "sensor-1"
    assert set(suspect.addresses) == {
        "192.0.2.7:1000",
        "198.51.100.3:2000",
        "203.0.113.9:3000",
    }
    assert suspect.detected_at == NOW + dt.timedelta(minutes=1)
    assert connections.clone_suspects(db, "other") == []


def test_prune_by_age(db: Database) -> None:
    connections.write_events(
        db, [event(created_at=NOW - dt.timedelta(days=40)), event()]
    )

    deleted = connections.prune_events(
        db, older_than=NOW - dt.timedelta(days=30), max_per_project=None
    )

    assert deleted == 1
    assert [e.created_at for e in connections.list_events(db, "acme")] == [NOW]


def test_prune_by_count_keeps_newest_per_project(db: Database) -> None:
    connections.write_events(db, [event() for _ in range(5)])
    connections.write_events(db, [event(project_id="other") for _ in range(2)])
    newest = connections.list_events(db, "acme", limit=3)

    deleted = connections.prune_events(db, older_than=None, max_per_project=3)

    assert deleted == 2
    assert connections.list_events(db, "acme") == newest
    assert len(connections.list_events(db, "other")) == 2
