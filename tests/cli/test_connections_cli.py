"""``fleetgate device connections``: the connection log as a table."""

from __future__ import annotations

import datetime as dt

import pytest

from fleetgate.cli import main
from fleetgate.errors import Reason
from fleetgate.store import connections
from fleetgate.store.connections import ConnectionResult, NewConnectionEvent
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project

from .conftest import Invoke

NOW = dt.datetime(2026, 12, 4, 12, 0, 5, tzinfo=dt.UTC)


def event(
    result: ConnectionResult,
    certificate_id: str,
    reason: str | None = None,
    other_peer: str | None = None,
) -> NewConnectionEvent:
    return NewConnectionEvent(
        project_id="acme",
        peer="192.0.2.7:40112",
        result=result,
        created_at=NOW,
        reason=reason,
        certificate_id=certificate_id,
        fingerprint="ab" * 32,
        other_peer=other_peer,
    )


@pytest.fixture(autouse=True)
def logged(database: Database) -> None:
    create_project(database, "acme")
    connections.write_events(
        database,
        [
            event(ConnectionResult.ACCEPTED, "sensor-1"),
            event(ConnectionResult.REJECTED, "sensor-2", Reason.EXPIRED),
            event(
                ConnectionResult.CLONE_SUSPECTED,
                "sensor-1",
                Reason.CLONE_SUSPECTED,
                other_peer="198.51.100.3:2000",
            ),
        ],
    )


def test_lists_events_newest_first(invoke: Invoke) -> None:
    listed = invoke(main.app, "device", "connections", "-p", "acme")

    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    clone = next(i for i, line in enumerate(lines) if "clone_suspected" in line)
    accepted = next(i for i, line in enumerate(lines) if "accepted" in line)
    assert clone < accepted
    assert "2026-12-04 12:00:05" in listed.stdout
    assert "3 of 3 event(s)" in listed.stdout


def test_filters_by_reason(invoke: Invoke) -> None:
    listed = invoke(
        main.app, "device", "connections", "-p", "acme", "--reason", "expired"
    )

    assert "sensor-2" in listed.stdout
    assert "sensor-1" not in listed.stdout


def test_filters_by_certificate_and_result(invoke: Invoke) -> None:
    listed = invoke(
        main.app,
        "device",
        "connections",
        "-p",
        "acme",
        "--certificate-id",
        "sensor-1",
        "--result",
        "accepted",
    )

    assert "1 of 1 event(s)" in listed.stdout


def test_lists_clone_suspects(invoke: Invoke) -> None:
    listed = invoke(main.app, "device", "connections", "-p", "acme", "--clones")

    assert "192.0.2.7:40112, 198.51.100.3:2000" in listed.stdout
    assert "1 suspected clone(s)" in listed.stdout


def test_unknown_reason_is_an_error(invoke: Invoke) -> None:
    listed = invoke(
        main.app, "device", "connections", "-p", "acme", "--reason", "bad_luck"
    )

    assert listed.exit_code == 1
    assert "bad_luck" in listed.output


def test_missing_project_is_an_error(invoke: Invoke) -> None:
    listed = invoke(main.app, "device", "connections", "-p", "nowhere")

    assert listed.exit_code == 1
    assert "cannot find project 'nowhere'" in listed.output
