"""The console's connection log: handshakes accepted and refused, filtered.

Events come from :func:`fleetgate.store.connections.list_events`, newest
first, 50 to a page. "Older events" continues below the last event
shown, so new handshakes arriving meanwhile do not shift the pages.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from fleetgate.api.console.pages import ConsoleRoute, render
from fleetgate.api.console.visitor import ProjectVisitorDep
from fleetgate.api.context import ContextDep
from fleetgate.errors import InvalidInput, Reason
from fleetgate.store import connections, projects

router = APIRouter(
    prefix="/console/projects/{project_id}/connections",
    route_class=ConsoleRoute,
    include_in_schema=False,
)

PER_PAGE = 50


@router.get("")
def connection_log(
    project_id: str,
    request: Request,
    context: ContextDep,
    visitor: ProjectVisitorDep,
    result: Annotated[str, Query(max_length=32)] = "",
    reason: Annotated[str, Query(max_length=64)] = "",
    certificate_id: Annotated[str, Query(max_length=128)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """List the project's connection events that match the filters."""
    project = projects.get_project(context.db, project_id)
    filters = {
        "result": result.strip() or None,
        "reason": reason.strip() or None,
        "certificate_id": certificate_id.strip() or None,
    }
    errors: dict[str, str] = {}
    events: list[connections.ConnectionEvent] = []
    try:
        events = connections.list_events(
            context.db, project_id, limit=PER_PAGE, before_id=before, **filters
        )
    except InvalidInput as exc:
        field = "result" if "result" in exc.message else "reason"
        errors[field] = exc.message
    return render(
        request,
        "connections.html",
        {
            "title": "Connection log",
            "project": project,
            "section": "connections",
            "events": events,
            "filters": {key: value or "" for key, value in filters.items()},
            "results": list(connections.ConnectionResult),
            "reasons": sorted(Reason),
            "errors": errors,
            "older": events[-1].id if len(events) == PER_PAGE else None,
            "paged": before is not None,
        },
        visitor=visitor,
        status_code=400 if errors else 200,
    )
