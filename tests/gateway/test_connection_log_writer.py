"""The connection log's buffered writer: bounds, flush on stop, flood limits."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from fleetgate import metrics
from fleetgate.config import ConnectionLogSettings
from fleetgate.errors import Reason
from fleetgate.gateway.connection_log import ConnectionLog
from fleetgate.store import connections, projects
from fleetgate.store.connections import ConnectionResult, NewConnectionEvent
from fleetgate.store.database import Database

# Long enough that only stop() or a full batch makes the writer run.
NEVER = dt.timedelta(hours=1)


@pytest.fixture
def db(database: Database) -> Database:
    projects.create_project(database, "acme")
    return database


def event(result: ConnectionResult = ConnectionResult.ACCEPTED) -> NewConnectionEvent:
    return NewConnectionEvent(
        project_id="acme",
        peer="192.0.2.7:40112",
        result=result,
        created_at=dt.datetime.now(dt.UTC),
        reason=Reason.UNKNOWN_CA if result is ConnectionResult.REJECTED else None,
        certificate_id="sensor-1",
    )


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_full_buffer_drops_and_counts(db: Database) -> None:
    settings = ConnectionLogSettings(buffer_size=3, flush_interval=NEVER)
    writer = ConnectionLog(db, settings)
    before = sample("fleetgate_connection_log_dropped_total")

    for _ in range(5):
        writer.record(event())

    assert writer.pending == 3
    assert writer.dropped == 2
    assert sample("fleetgate_connection_log_dropped_total") == before + 2


def test_stop_writes_buffered_events(db: Database) -> None:
    settings = ConnectionLogSettings(flush_interval=NEVER, prune_interval=NEVER)

    async def run() -> None:
        writer = ConnectionLog(db, settings)
        writer.start()
        writer.record(event())
        writer.record(event(ConnectionResult.CLOSED))
        await writer.stop()

    asyncio.run(run())

    assert len(connections.list_events(db, "acme")) == 2


def test_full_batch_is_written_before_the_interval(db: Database) -> None:
    settings = ConnectionLogSettings(
        batch_size=2, flush_interval=NEVER, prune_interval=NEVER
    )

    async def run() -> int:
        writer = ConnectionLog(db, settings)
        writer.start()
        writer.record(event())
        writer.record(event())
        for _ in range(100):
            await asyncio.sleep(0.02)
            if writer.pending == 0:
                break
        written = len(await asyncio.to_thread(connections.list_events, db, "acme"))
        await writer.stop()
        return written

    assert asyncio.run(run()) == 2


def test_rejections_over_the_limit_are_only_counted(db: Database) -> None:
    settings = ConnectionLogSettings(max_rejections_per_minute=2)
    writer = ConnectionLog(db, settings, clock=lambda: 120.0)
    labels = {"reason": "unknown_ca"}
    before = sample("fleetgate_connection_log_unrecorded_total", labels)

    for _ in range(5):
        writer.record_rejection(event(ConnectionResult.REJECTED))

    assert writer.pending == 2
    assert sample("fleetgate_connection_log_unrecorded_total", labels) == before + 3


def test_rejection_limit_resets_each_minute(db: Database) -> None:
    now = [120.0]
    settings = ConnectionLogSettings(max_rejections_per_minute=1)
    writer = ConnectionLog(db, settings, clock=lambda: now[0])

    writer.record_rejection(event(ConnectionResult.REJECTED))
    writer.record_rejection(event(ConnectionResult.REJECTED))
    now[0] += 60
    writer.record_rejection(event(ConnectionResult.REJECTED))

    assert writer.pending == 2


def test_prune_applies_the_count_limit(db: Database) -> None:
    connections.write_events(db, [event() for _ in range(5)])
    writer = ConnectionLog(db, ConnectionLogSettings(max_events_per_project=2))

    deleted = asyncio.run(writer.prune())

    assert deleted == 3
    assert len(connections.list_events(db, "acme")) == 2
