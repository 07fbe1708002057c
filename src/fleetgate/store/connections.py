"""The connection log: handshakes accepted and rejected, session ends, clones.

Each row belongs to one project, and rows exist only for projects that
exist: a handshake naming no project, or a project that is not there,
is counted in metrics and in a periodic log line instead (see
:mod:`fleetgate.gateway.connection_log`), so that garbage handshakes
cannot create rows or reveal one project's traffic to another. The
gateway buffers events and writes them here in batches with
:func:`write_events`. :func:`prune_events` bounds the table by age and
by a count per project.

Results are ``accepted`` (the device was associated with its record),
``rejected`` (the chain, the device record or the handshake was
refused; ``reason`` gives the cause), ``closed`` (an accepted session
ended; ``reason`` gives the cause) and ``clone_suspected`` (one certificate ID in two
live sessions from two addresses; ``other_peer`` is the second one).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Sequence

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.sql.elements import ColumnElement

from fleetgate.errors import InvalidInput, NotFound, Reason
from fleetgate.store.batch import batch_transaction
from fleetgate.store.database import Database, PreparedStatement
from fleetgate.store.models import Base, ConnectionEventRow, Project

MAX_LIMIT = 1000
# Newest clone_suspected rows read to build the list of suspects.
MAX_CLONE_ROWS = 10_000


class ConnectionResult(enum.StrEnum):
    """The outcome that a connection event records."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CLOSED = "closed"
    CLONE_SUSPECTED = "clone_suspected"


@dataclasses.dataclass(frozen=True)
class NewConnectionEvent:
    """An event the gateway has observed and not yet written."""

    project_id: str
    peer: str
    result: ConnectionResult
    created_at: dt.datetime
    reason: str | None = None
    certificate_id: str | None = None
    device_id: str | None = None
    fingerprint: str | None = None
    other_peer: str | None = None


@dataclasses.dataclass(frozen=True)
class ConnectionEvent:
    """A stored connection log event."""

    id: int
    project_id: str
    device_id: str | None
    certificate_id: str | None
    peer: str
    result: str
    reason: str | None
    fingerprint: str | None
    created_at: dt.datetime
    other_peer: str | None = None

    @classmethod
    def from_row(cls, row: ConnectionEventRow) -> ConnectionEvent:
        """Copy a row into an event that outlives its session."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            device_id=row.device_id,
            certificate_id=row.certificate_id,
            peer=row.peer,
            result=row.result,
            reason=row.reason,
            fingerprint=row.fingerprint,
            created_at=row.created_at,
            other_peer=row.other_peer,
        )


@dataclasses.dataclass(frozen=True)
class CloneSuspect:
    """A certificate ID seen in live sessions from several addresses."""

    certificate_id: str
    device_id: str | None
    addresses: tuple[str, ...]
    detected_at: dt.datetime


def write_events(db: Database, events: Sequence[NewConnectionEvent]) -> int:
    """Insert ``events`` in one transaction and return how many were written.

    Events of projects that do not exist (any more) are skipped.
    """
    if not events:
        return 0
    # Plain DB-API statements: each connection adds a few rows, and in
    # batches of 100 on SQLite this took 8.5 us per row against 14 us for
    # a Core executemany through a session.
    with batch_transaction(db) as transaction:
        existing = {
            project_id
            for project_id in {event.project_id for event in events}
            if transaction.fetch_one(_PROJECT_EXISTS, {"project_id": project_id})
        }
        rows = [_event_row(event) for event in events if event.project_id in existing]
        if rows:
            transaction.execute_many(_INSERT_EVENT, rows)
    return len(rows)


_PROJECT_EXISTS = PreparedStatement(
    select(Project.id).where(Project.id == bindparam("project_id"))
)
_EVENT_COLUMNS = (
    "project_id",
    "peer",
    "result",
    "created_at",
    "reason",
    "certificate_id",
    "device_id",
    "fingerprint",
    "other_peer",
)
_EVENT_TABLE = Base.metadata.tables[ConnectionEventRow.__tablename__]
_INSERT_EVENT = PreparedStatement(
    insert(_EVENT_TABLE).values(
        {
            name: bindparam(name, type_=_EVENT_TABLE.c[name].type)
            for name in _EVENT_COLUMNS
        }
    )
)


def _event_row(event: NewConnectionEvent) -> dict[str, object]:
    return {
        "project_id": event.project_id,
        "peer": event.peer,
        "result": event.result,
        "created_at": event.created_at,
        "reason": event.reason,
        "certificate_id": event.certificate_id,
        "device_id": event.device_id,
        "fingerprint": event.fingerprint,
        "other_peer": event.other_peer,
    }


def list_events(
    db: Database,
    project_id: str,
    *,
    result: str | None = None,
    reason: str | None = None,
    certificate_id: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[ConnectionEvent]:
    """Return a project's events, newest first, optionally filtered.

    ``before_id`` continues a listing: only events with a smaller ID,
    that is older ones, are returned.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            f"cannot list connection events: limit {limit} is outside 1-{MAX_LIMIT}"
        )
    conditions = _conditions(
        project_id, result=result, reason=reason, certificate_id=certificate_id
    )
    if before_id is not None:
        conditions.append(ConnectionEventRow.id < before_id)

    with db.session(read_only=True) as session:
        _require_project(session.get(Project, project_id), project_id)
        rows = session.scalars(
            select(ConnectionEventRow)
            .where(*conditions)
            .order_by(ConnectionEventRow.id.desc())
            .limit(limit)
        )
        return [ConnectionEvent.from_row(row) for row in rows]


def count_events(
    db: Database,
    project_id: str,
    *,
    result: str | None = None,
    reason: str | None = None,
    certificate_id: str | None = None,
) -> int:
    """Return how many of a project's events match the filters."""
    conditions = _conditions(
        project_id, result=result, reason=reason, certificate_id=certificate_id
    )
    with db.session(read_only=True) as session:
        _require_project(session.get(Project, project_id), project_id)
        return session.scalar(select(func.count()).where(*conditions)) or 0


def clone_suspects(db: Database, project_id: str) -> list[CloneSuspect]:
    """Return the certificate IDs suspected of being cloned, newest first.

    One suspect per certificate ID, with every address of its recorded
    clone events and the time of the latest.
    """
    with db.session(read_only=True) as session:
        _require_project(session.get(Project, project_id), project_id)
        rows = list(
            session.scalars(
                select(ConnectionEventRow)
                .where(
                    ConnectionEventRow.project_id == project_id,
                    ConnectionEventRow.result == ConnectionResult.CLONE_SUSPECTED,
                )
                .order_by(ConnectionEventRow.id.desc())
                .limit(MAX_CLONE_ROWS)
            )
        )

    suspects: dict[str, CloneSuspect] = {}
    for row in rows:
        certificate_id = row.certificate_id or ""
        found = suspects.get(certificate_id)
        seen = [row.peer] + ([row.other_peer] if row.other_peer else [])
        if found is None:
            suspects[certificate_id] = CloneSuspect(
                certificate_id=certificate_id,
                device_id=row.device_id,
                addresses=tuple(dict.fromkeys(seen)),
                detected_at=row.created_at,
            )
            continue
        addresses = tuple(dict.fromkeys([*found.addresses, *seen]))
        suspects[certificate_id] = dataclasses.replace(
            found,
            addresses=addresses,
            device_id=found.device_id or row.device_id,
        )
    return list(suspects.values())


def prune_events(
    db: Database,
    *,
    older_than: dt.datetime | None,
    max_per_project: int | None,
) -> int:
    """Delete events older than ``older_than`` and beyond the newest
    ``max_per_project`` of each project; return how many were deleted."""
    if max_per_project is not None and max_per_project < 1:
        raise ValueError(f"max_per_project must be at least 1, not {max_per_project}")
    deleted = 0
    if older_than is not None:
        with db.session() as session:
            outcome = session.execute(
                delete(ConnectionEventRow).where(
                    ConnectionEventRow.created_at < older_than
                )
            )
            deleted += _rowcount(outcome)
    if max_per_project is None:
        return deleted

    with db.session(read_only=True) as session:
        crowded = list(
            session.scalars(
                select(ConnectionEventRow.project_id)
                .group_by(ConnectionEventRow.project_id)
                .having(func.count() > max_per_project)
            )
        )
    for project_id in crowded:
        with db.session() as session:
            # The ID of the oldest event to keep; IDs grow with time.
            threshold = session.scalar(
                select(ConnectionEventRow.id)
                .where(ConnectionEventRow.project_id == project_id)
                .order_by(ConnectionEventRow.id.desc())
                .offset(max_per_project - 1)
                .limit(1)
            )
            if threshold is None:
                continue
            outcome = session.execute(
                delete(ConnectionEventRow).where(
                    ConnectionEventRow.project_id == project_id,
                    ConnectionEventRow.id < threshold,
                )
            )
            deleted += _rowcount(outcome)
    return deleted


def _conditions(
    project_id: str,
    *,
    result: str | None,
    reason: str | None,
    certificate_id: str | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        ConnectionEventRow.project_id == project_id
    ]
    if result is not None:
        if result not in set(ConnectionResult):
            raise InvalidInput(
                f"cannot list connection events: result {result!r} is not one "
                f"of {', '.join(ConnectionResult)}"
            )
        conditions.append(ConnectionEventRow.result == result)
    if reason is not None:
        if reason not in set(Reason):
            raise InvalidInput(
                f"cannot list connection events: reason {reason!r} is not a "
                "reason code, such as unknown_ca, expired or idle_timeout"
            )
        conditions.append(ConnectionEventRow.reason == reason)
    if certificate_id is not None:
        conditions.append(ConnectionEventRow.certificate_id == certificate_id)
    return conditions


def _require_project(project: Project | None, project_id: str) -> None:
    if project is None:
        raise NotFound(f"cannot find project {project_id!r}")


def _rowcount(outcome: object) -> int:
    count = getattr(outcome, "rowcount", 0)
    return count if isinstance(count, int) and count > 0 else 0
