"""``.../devices/{id}/logs`` and ``.../devices/{id}/stream``: what devices posted.

Both list records newest first, one page at a time, optionally within
``start`` (inclusive) and ``end`` (exclusive), ISO 8601 times with a
time zone, such as ``2026-12-14T08:00:00Z``. The time of a record is
when the gateway received it. A stream record's ``data`` is its value
nested under its path, so a post of ``21.5`` to ``.s/env/temp`` reads
``{"env": {"temp": 21.5}}``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.paging import DEFAULT_PER_PAGE, PageQuery, PerPageQuery
from fleetgate.api.schemas import DeviceLogEntry, Page, StreamItem
from fleetgate.store import device_logs, stream
from fleetgate.store.timeline import TimeRange

router = APIRouter(
    prefix="/v1/projects/{project_id}/devices/{device_id}", tags=["device data"]
)

StartQuery = Annotated[
    dt.datetime | None,
    Query(description="Only records received at or after this time."),
]
EndQuery = Annotated[
    dt.datetime | None,
    Query(description="Only records received before this time."),
]


@router.get("/logs", summary="List a device's log entries")
def list_logs(
    device_id: str,
    context: ContextDep,
    scope: ScopeDep,
    start: StartQuery = None,
    end: EndQuery = None,
    page: PageQuery = 0,
    per_page: PerPageQuery = DEFAULT_PER_PAGE,
) -> Page[DeviceLogEntry]:
    """Return one page of the device's log entries, newest first."""
    result = device_logs.list_log_entries(
        context.db,
        scope.project_id,
        device_id,
        window=TimeRange(start, end),
        page=page,
        per_page=per_page,
    )
    return Page[DeviceLogEntry](
        items=[DeviceLogEntry.of(record) for record in result.items],
        page=result.page,
        per_page=result.per_page,
        total=result.total,
    )


@router.get("/stream", summary="List a device's LightDB Stream records")
def list_stream(
    device_id: str,
    context: ContextDep,
    scope: ScopeDep,
    start: StartQuery = None,
    end: EndQuery = None,
    page: PageQuery = 0,
    per_page: PerPageQuery = DEFAULT_PER_PAGE,
) -> Page[StreamItem]:
    """Return one page of the device's stream records, newest first."""
    result = stream.list_stream_records(
        context.db,
        scope.project_id,
        device_id,
        window=TimeRange(start, end),
        page=page,
        per_page=per_page,
    )
    return Page[StreamItem](
        items=[StreamItem.of(record) for record in result.items],
        page=result.page,
        per_page=result.per_page,
        total=result.total,
    )
