"""The PKI provider of each project, its settings and its status.

A project without a row uses the ``offline`` provider: CA certificates
are uploaded by hand and nothing is issued. Settings are stored as JSON
and must not contain secrets, because they are shown by ``fleetgate
provider status`` and kept in clear in the database. Credentials are
taken from the environment or from a file whose path the settings name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fleetgate.errors import Conflict, InvalidInput
from fleetgate.store import audit
from fleetgate.store.database import Database
from fleetgate.store.models import PkiProviderConfig, utcnow
from fleetgate.store.projects import require_project

DEFAULT_KIND = "offline"
DEFAULT_MAX_ROTATIONS_PER_HOUR = 10
# One a second. The bound also keeps the value inside the INTEGER column
# on every backend (32 bits on PostgreSQL).
MAX_ROTATIONS_PER_HOUR = 3600
# Width of the error column, in characters; longer messages are cut.
MAX_ERROR_LENGTH = 1024


@dataclasses.dataclass(frozen=True)
class ProviderConfigRecord:
    """A project's provider configuration and the result of its last sync."""

    project_id: str
    kind: str
    settings: dict[str, Any]
    status: str
    error: str | None
    ca_count: int
    max_rotations_per_hour: int
    last_sync_at: dt.datetime | None
    updated_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: PkiProviderConfig) -> ProviderConfigRecord:
        """Copy a provider row into a record that outlives its session."""
        return cls(
            project_id=row.project_id,
            kind=row.kind,
            settings=dict(row.settings),
            status=row.status,
            error=row.error,
            ca_count=row.ca_count,
            max_rotations_per_hour=row.max_rotations_per_hour,
            last_sync_at=row.last_sync_at,
            updated_at=row.updated_at,
        )

    @classmethod
    def default(cls, project_id: str) -> ProviderConfigRecord:
        """Return the configuration of a project that never set a provider."""
        return cls(
            project_id=project_id,
            kind=DEFAULT_KIND,
            settings={},
            status="offline",
            error=None,
            ca_count=0,
            max_rotations_per_hour=DEFAULT_MAX_ROTATIONS_PER_HOUR,
            last_sync_at=None,
            updated_at=None,
        )


def get_provider_config(db: Database, project_id: str) -> ProviderConfigRecord:
    """Return a project's provider configuration, ``offline`` when none is set.

    Raises NotFound for an unknown project.
    """
    with db.session(read_only=True) as session:
        require_project(session, project_id)
        row = session.get(PkiProviderConfig, project_id)
        if row is None:
            return ProviderConfigRecord.default(project_id)
        return ProviderConfigRecord.from_row(row)


def set_provider_config(
    db: Database,
    project_id: str,
    kind: str,
    settings: dict[str, Any],
    *,
    status: str,
    max_rotations_per_hour: int | None = None,
    actor: str | None = None,
) -> ProviderConfigRecord:
    """Create or replace a project's provider configuration.

    A new configuration starts with no error, no CAs counted and no sync.
    ``max_rotations_per_hour`` None keeps the current limit. With
    ``actor`` the change is audited as ``provider.set``.
    """
    if max_rotations_per_hour is not None and not (
        1 <= max_rotations_per_hour <= MAX_ROTATIONS_PER_HOUR
    ):
        raise InvalidInput(
            f"cannot set rotation limit {max_rotations_per_hour}: expected "
            f"1-{MAX_ROTATIONS_PER_HOUR} per hour"
        )
    try:
        with db.session() as session:
            require_project(session, project_id)
            row = session.get(PkiProviderConfig, project_id, with_for_update=True)
            if row is None:
                row = PkiProviderConfig(
                    project_id=project_id,
                    max_rotations_per_hour=DEFAULT_MAX_ROTATIONS_PER_HOUR,
                )
                session.add(row)
            row.kind = kind
            row.settings = dict(settings)
            row.status = status
            row.error = None
            row.ca_count = 0
            row.last_sync_at = None
            row.updated_at = utcnow()
            if max_rotations_per_hour is not None:
                row.max_rotations_per_hour = max_rotations_per_hour
            session.flush()
            if actor is not None:
                audit.record(
                    session,
                    actor=actor,
                    action="provider.set",
                    project_id=project_id,
                    target_type="provider",
                    target_id=project_id,
                    details={
                        "kind": kind,
                        "settings": dict(settings),
                        "maxRotationsPerHour": row.max_rotations_per_hour,
                    },
                )
            return ProviderConfigRecord.from_row(row)
    except IntegrityError as exc:
        # Two processes configured the same project at once.
        raise Conflict(
            f"cannot set the provider of project {project_id!r}: "
            "another process changed it at the same time, try again"
        ) from exc


def record_provider_status(
    db: Database,
    project_id: str,
    *,
    status: str,
    error: str | None,
    ca_count: int | None = None,
    synced_at: dt.datetime | None = None,
    actor: str | None = None,
) -> None:
    """Store the outcome of a sync or health check; a no-op without a row.

    With ``actor`` the outcome is audited as ``provider.sync``.
    """
    if error is not None and len(error) > MAX_ERROR_LENGTH:
        error = error[: MAX_ERROR_LENGTH - 3] + "..."
    with db.session() as session:
        row = session.get(PkiProviderConfig, project_id, with_for_update=True)
        if row is None:
            return
        row.status = status
        row.error = error
        if ca_count is not None:
            row.ca_count = ca_count
        if synced_at is not None:
            row.last_sync_at = synced_at
        if actor is not None:
            audit.record(
                session,
                actor=actor,
                action="provider.sync",
                project_id=project_id,
                target_type="provider",
                target_id=project_id,
                details={"kind": row.kind, "status": status, "caCount": row.ca_count},
            )


def list_provider_configs(
    db: Database, *, kinds: tuple[str, ...] | None = None
) -> list[ProviderConfigRecord]:
    """Return every stored provider configuration, optionally of some kinds."""
    query = select(PkiProviderConfig).order_by(PkiProviderConfig.project_id)
    if kinds is not None:
        query = query.where(PkiProviderConfig.kind.in_(kinds))
    with db.session(read_only=True) as session:
        return [ProviderConfigRecord.from_row(row) for row in session.scalars(query)]
