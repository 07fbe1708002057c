"""Console pages for a project as a whole: the overview and expiries.

The expiry chart counts enabled devices by the week they lose service,
from :func:`fleetgate.forecast.expiry_forecast`, the same figures as
``fleetgate forecast`` and ``GET /v1/projects/{id}/forecast``.
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request, Response

from fleetgate.api.console.chart import lay_out
from fleetgate.api.console.pages import ConsoleRoute, render
from fleetgate.api.console.visitor import ProjectVisitorDep
from fleetgate.api.context import ContextDep
from fleetgate.forecast import expiry_forecast
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
    """Chart enabled devices by the week they lose service over the next year."""
    project = projects.get_project(context.db, project_id)
    forecast = expiry_forecast(
        context.db,
        project_id,
        now=dt.datetime.now(dt.UTC),
        weeks=FORECAST_WEEKS,
        server_chain=context.server_chain,
    )
    return render(
        request,
        "expiries.html",
        {
            "title": "Certificate expiries",
            "project": project,
            "section": "expiries",
            "forecast": forecast,
            "within": sum(week.devices for week in forecast.weeks),
            "chart": lay_out(forecast.weeks),
        },
        visitor=visitor,
    )
