"""The audit log: one entry per management action, written with the action.

Store functions that change projects, CA certificates, devices, state or
API keys take an ``actor`` keyword. When it is given, they call
:func:`record` inside their own transaction, so an action and its entry
are committed together or not at all. The command line passes
:data:`CLI_ACTOR`, and the management API passes the ID of the API key
that made the request. Device traffic (association, state written over
CoAP) passes no actor and is not audited.

``details`` contains what was changed, such as a new name or a certificate
fingerprint. It never holds API keys, key material or whole
certificates.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from fleetgate.errors import InvalidInput, NotFound
from fleetgate.store.database import MAX_PAGE, Database
from fleetgate.store.models import AuditEntry, Project

log = logging.getLogger(__name__)

# The actor of every action taken with the ``fleetgate`` command line.
CLI_ACTOR = "cli"

MAX_PER_PAGE = 1000


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """An audit log entry as stored."""

    id: int
    project_id: str | None
    actor: str
    action: str
    target_type: str
    target_id: str
    details: dict[str, Any]
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: AuditEntry) -> AuditRecord:
        """Copy an audit row into a record that outlives its session."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            actor=row.actor,
            action=row.action,
            target_type=row.target_type,
            target_id=row.target_id,
            details=dict(row.details),
            created_at=row.created_at,
        )


@dataclasses.dataclass(frozen=True)
class AuditPage:
    """One page of a project's audit log and the number of entries overall."""

    items: list[AuditRecord]
    page: int
    per_page: int
    total: int


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    project_id: str | None,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit entry to ``session``'s transaction.

    The entry is logged at INFO once the transaction commits, so the log
    never shows an action that was rolled back.
    """
    entry = AuditEntry(
        project_id=project_id,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=dict(details or {}),
    )
    session.add(entry)

    def _log_committed(_session: Session) -> None:
        log.info(
            "audit action=%s project=%s actor=%s target=%s:%s",
            action,
            project_id or "-",
            actor,
            target_type,
            target_id,
        )

    event.listen(session, "after_commit", _log_committed, once=True)


def list_audit_entries(
    db: Database, project_id: str, *, page: int = 0, per_page: int = 100
) -> AuditPage:
    """Return one page of a project's audit log, newest first."""
    if not 0 <= page <= MAX_PAGE:
        raise InvalidInput(
            f"cannot list audit entries: page {page} is outside 0-{MAX_PAGE}"
        )
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(
            f"cannot list audit entries: per_page {per_page} is outside "
            f"1-{MAX_PER_PAGE}"
        )

    condition = AuditEntry.project_id == project_id
    with db.session(read_only=True) as session:
        # Not projects.require_project: that module imports this one.
        if session.get(Project, project_id) is None:
            raise NotFound(f"cannot find project {project_id!r}")
        total = session.scalar(select(func.count()).where(condition)) or 0
        rows = session.scalars(
            select(AuditEntry)
            .where(condition)
            .order_by(AuditEntry.id.desc())
            .offset(page * per_page)
            .limit(per_page)
        )
        entries = [AuditRecord.from_row(row) for row in rows]
    return AuditPage(items=entries, page=page, per_page=per_page, total=total)
