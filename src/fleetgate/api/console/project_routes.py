"""Console pages for a project as a whole: the overview and expiries.

The expiry chart counts device certificates by the week they expire in,
from the expiry of the certificate each device last connected with
(:func:`fleetgate.store.fleet_summary.weekly_expiries`).
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request, Response

from fleetgate.api.console.chart import lay_out
from fleetgate.api.console.pages import ConsoleRoute, render
from fleetgate.api.console.visitor import ProjectVisitorDep
from fleetgate.api.context import ContextDep
from fleetgate.store import certificates, connections, fleet_summary, projects

router = APIRouter(
    prefix="/console/projects/{project_id}",
    route_class=ConsoleRoute,
    include_in_schema=False,
)

FORECAST_WEEKS = 52
REFUSALS_SHOWN = 10


@router.get("")
def overview(
    project_id: str, request: Request, context: ContextDep, visitor: ProjectVisitorDep
) -> Response:
    """Show device counts, CA certificate expiries and the latest refusals."""
    now = dt.datetime.now(dt.UTC)
    project = projects.get_project(context.db, project_id)
    cas = sorted(
        certificates.list_ca_certificates(context.db, project_id),
        key=lambda ca: ca.not_after,
    )
    return render(
        request,
        "overview.html",
        {
            "title": f"Project {project.id}",
            "project": project,
            "section": "overview",
            "counts": fleet_summary.count_devices(context.db, project_id, now=now),
            "certificates": cas,
            "refusals": connections.list_events(
                context.db, project_id, result="rejected", limit=REFUSALS_SHOWN
            ),
        },
        visitor=visitor,
    )


@router.get("/expiries")
def expiries(
    project_id: str, request: Request, context: ContextDep, visitor: ProjectVisitorDep
) -> Response:
    """Chart device certificate expiries by week over the next year."""
    now = dt.datetime.now(dt.UTC)
    project = projects.get_project(context.db, project_id)
    expired, weeks = fleet_summary.weekly_expiries(
        context.db, project_id, now=now, weeks=FORECAST_WEEKS
    )
    return render(
        request,
        "expiries.html",
        {
            "title": "Certificate expiries",
            "project": project,
            "section": "expiries",
            "expired": expired,
            "weeks": weeks,
            "total": sum(week.count for week in weeks),
            "chart": lay_out(weeks),
        },
        visitor=visitor,
    )
