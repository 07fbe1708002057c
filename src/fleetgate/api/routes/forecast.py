"""``GET /v1/projects/{id}/forecast``: devices losing service, week by week.

Counts the project's enabled devices by the week in which the first of
their certificates expires (their own, a CA certificate of their chain,
or the server chain they verify the gateway with), for the next
``weeks`` weeks, and lists each CA and server certificate with the
devices it affects. See :func:`fleetgate.forecast.expiry_forecast`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.forecast import MAX_WEEKS, expiry_forecast

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["forecast"])


@router.get("/forecast", summary="Forecast certificate expiries by week")
def forecast(
    context: ContextDep,
    scope: ScopeDep,
    weeks: Annotated[
        int, Query(ge=1, le=MAX_WEEKS, description="Weeks to forecast from now.")
    ] = 52,
) -> dict[str, Any]:
    """Return ``{"data": forecast}`` from the current time."""
    result = expiry_forecast(
        context.db,
        scope.project_id,
        now=dt.datetime.now(dt.UTC),
        weeks=weeks,
        server_chain=context.server_chain,
    )
    return {"data": result.to_json()}
