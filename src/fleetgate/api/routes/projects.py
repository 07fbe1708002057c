"""``/v1/projects``: list, read and (with an admin key) create projects.

A project key reaches only its own project: the listing contains that
one, and any other ID is 404 whether or not it exists.
"""

from __future__ import annotations

import re

from fastapi import APIRouter

from fleetgate.api.auth import CallerDep, ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.paging import DEFAULT_PER_PAGE, PageQuery, PerPageQuery, page_of
from fleetgate.api.schemas import One, Page, Project, ProjectCreate
from fleetgate.errors import InvalidInput
from fleetgate.store import projects

router = APIRouter(prefix="/v1/projects", tags=["projects"])

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
MAX_PROJECT_ID_LENGTH = 63


@router.get("", summary="List the projects that the key reaches")
def list_projects(
    context: ContextDep,
    caller: CallerDep,
    page: PageQuery = 0,
    per_page: PerPageQuery = DEFAULT_PER_PAGE,
) -> Page[Project]:
    """Return every project for an admin key, or the key's own project."""
    if caller.project_id is None:
        records = projects.list_projects(context.db)
    else:
        records = [projects.get_project(context.db, caller.project_id)]
    return Page[Project](
        items=[Project.of(record) for record in page_of(records, page, per_page)],
        page=page,
        per_page=per_page,
        total=len(records),
    )


@router.get("/{project_id}", summary="Get a project")
def get_project(context: ContextDep, scope: ScopeDep) -> One[Project]:
    """Return one project."""
    record = projects.get_project(context.db, scope.project_id)
    return One[Project](data=Project.of(record))


@router.post("", summary="Create a project (admin key)")
def create_project(
    body: ProjectCreate, context: ContextDep, caller: CallerDep
) -> One[Project]:
    """Create a project; its ID is ``id``, or else made from ``name``."""
    caller.require_admin("create a project")
    project_id = body.id if body.id is not None else _id_from_name(body.name)

    record = projects.create_project(
        context.db,
        project_id,
        name=body.name,
        require_v3=body.require_v3,
        actor=caller.actor,
    )
    return One[Project](data=Project.of(record))


def _id_from_name(name: str | None) -> str:
    # Golioth derives a project's ID from its name, and scripts written
    # for it send only a name.
    if name is None:
        raise InvalidInput("cannot create project: give an id or a name")
    slug = _NOT_SLUG.sub("-", name.lower()).strip("-")[:MAX_PROJECT_ID_LENGTH]
    if not slug:
        raise InvalidInput(
            f"cannot make a project ID from name {name!r}: give an id made of "
            "a-z, 0-9 and '-'"
        )
    return slug.rstrip("-")
