"""Projects: the tenants that own CA certificates and devices.

A project's ID is the slug that its devices carry as the subject ``O`` of
their certificates, so it is fixed at creation and never renamed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetgate.errors import Conflict, InvalidInput, NotFound
from fleetgate.pki.identity import validate_project_id
from fleetgate.store import audit
from fleetgate.store.database import Database
from fleetgate.store.models import Project

MAX_NAME_LENGTH = 200


@dataclasses.dataclass(frozen=True)
class ProjectRecord:
    """A project as stored."""

    id: str
    name: str
    require_v3: bool
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: Project) -> ProjectRecord:
        """Copy a project row into a record that outlives its session."""
        return cls(
            id=row.id,
            name=row.name,
            require_v3=row.require_v3,
            created_at=row.created_at,
        )


def create_project(
    db: Database,
    project_id: str,
    *,
    name: str | None = None,
    require_v3: bool = False,
    actor: str | None = None,
) -> ProjectRecord:
    """Create a project whose name defaults to its ID.

    Raises InvalidInput for an ID outside ``[a-z0-9][a-z0-9-]{0,62}`` and
    Conflict when the ID is taken. With ``actor`` the creation is audited.
    """
    project_id = validate_project_id(project_id)
    display_name = project_id if name is None else _validate_name(name)

    row = Project(id=project_id, name=display_name, require_v3=require_v3)
    try:
        with db.session() as session:
            session.add(row)
            if actor is not None:
                audit.record(
                    session,
                    actor=actor,
                    action="project.create",
                    project_id=project_id,
                    target_type="project",
                    target_id=project_id,
                    details={"name": display_name, "requireV3": require_v3},
                )
    except IntegrityError as exc:
        raise Conflict(
            f"cannot create project {project_id!r}: the ID is already taken"
        ) from exc
    return ProjectRecord.from_row(row)


def get_project(db: Database, project_id: str) -> ProjectRecord:
    """Return one project, or raise NotFound."""
    with db.session(read_only=True) as session:
        return ProjectRecord.from_row(require_project(session, project_id))


def list_projects(db: Database) -> list[ProjectRecord]:
    """Return every project, ordered by ID."""
    with db.session(read_only=True) as session:
        rows = session.scalars(select(Project).order_by(Project.id))
        return [ProjectRecord.from_row(row) for row in rows]


def require_project(session: Session, project_id: str) -> Project:
    """Load a project row in ``session``, or raise NotFound."""
    row = session.get(Project, project_id)
    if row is None:
        raise NotFound(f"cannot find project {project_id!r}")
    return row


def _validate_name(name: str) -> str:
    if not name.strip():
        raise InvalidInput("cannot use an empty project name")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"cannot use project name of {len(name)} characters: "
            f"the maximum is {MAX_NAME_LENGTH}"
        )
    # Tables and logs show the name, where a control character could
    # move the cursor or end a line.
    if not name.isprintable():
        raise InvalidInput(
            f"cannot use project name {name!r}: it contains control characters"
        )
    return name
