"""Console pages for devices: a searchable list and one page per device.

A device's page shows its certificate history, its LightDB State as a
JSON tree with an editor for the whole document, and its latest LightDB
Stream records. State edits go through the same parsing and limits as
the API's ``POST .../data``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response

from fleetgate.api.console.pages import (
    ConsoleRoute,
    confirm_disable,
    redirect,
    render,
)
from fleetgate.api.console.visitor import (
    ProjectFormVisitorDep,
    ProjectVisitorDep,
    Visitor,
)
from fleetgate.api.context import ContextDep
from fleetgate.api.routes.state import parse_value
from fleetgate.errors import InvalidInput, Reason
from fleetgate.store import (
    connections,
    devices,
    issued_certificates,
    projects,
    state,
    stream,
)
from fleetgate.store.database import MAX_PAGE

router = APIRouter(
    prefix="/console/projects/{project_id}/devices",
    route_class=ConsoleRoute,
    include_in_schema=False,
)

PER_PAGE = 25
STREAM_RECORDS_SHOWN = 20
# Accepted handshakes read to list the certificates a device connected with.
HANDSHAKES_READ = 200


@router.get("")
def device_list(
    project_id: str,
    request: Request,
    context: ContextDep,
    visitor: ProjectVisitorDep,
    q: Annotated[str, Query(max_length=200)] = "",
    page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
) -> Response:
    """List one page of devices whose name contains the search term."""
    found = devices.list_devices(
        context.db, project_id, name=q.strip() or None, page=page, per_page=PER_PAGE
    )
    last_page = max(0, (found.total - 1) // PER_PAGE)
    return render(
        request,
        "devices.html",
        {
            "title": "Devices",
            "project": projects.get_project(context.db, project_id),
            "section": "devices",
            "devices": found,
            "query": q,
            "last_page": last_page,
        },
        visitor=visitor,
    )


@router.get("/{device_id}")
def device_page(
    project_id: str,
    device_id: str,
    request: Request,
    context: ContextDep,
    visitor: ProjectVisitorDep,
) -> Response:
    """Show one device with its certificates, state and stream records."""
    return _device_page(request, context, visitor, project_id, device_id)


@router.post("/{device_id}/enabled")
async def set_enabled(
    project_id: str,
    device_id: str,
    request: Request,
    context: ContextDep,
    visitor: ProjectFormVisitorDep,
    enabled: Annotated[bool, Form()],
    confirmed: Annotated[bool, Form()] = False,
) -> Response:
    """Enable a device, or disable it once confirmed; a disabled one cannot connect."""
    if not enabled and not confirmed:
        device = await asyncio.to_thread(
            devices.get_device, context.db, project_id, device_id
        )
        project = await asyncio.to_thread(projects.get_project, context.db, project_id)
        page = f"/console/projects/{project_id}/devices/{device_id}"
        return confirm_disable(
            request,
            visitor,
            project,
            title="Disable device",
            question=f"Disable device {device.name}?",
            consequence="Its next connection is refused until you enable it again.",
            action=f"{page}/enabled",
            cancel_url=page,
        )
    await asyncio.to_thread(
        devices.set_device_enabled,
        context.db,
        project_id,
        device_id,
        enabled,
        actor=visitor.actor,
    )
    # As the API does, end the device's open sessions at once rather than
    # at their next recheck.
    if not enabled and context.close_sessions is not None:
        await context.close_sessions(project_id, [device_id], Reason.DEVICE_DISABLED)
    return redirect(f"/console/projects/{project_id}/devices/{device_id}")


@router.post("/{device_id}/state")
def replace_state(
    project_id: str,
    device_id: str,
    request: Request,
    context: ContextDep,
    visitor: ProjectFormVisitorDep,
    document: Annotated[str, Form()] = "",
) -> Response:
    """Replace the device's whole LightDB State document with valid JSON."""
    devices.get_device(context.db, project_id, device_id)
    try:
        value = parse_value(document.encode())
        state.set_state(
            context.db,
            device_id,
            (),
            value,
            project_id=project_id,
            actor=visitor.actor,
        )
    except InvalidInput as exc:
        return _device_page(
            request,
            context,
            visitor,
            project_id,
            device_id,
            draft=document,
            state_error=exc.message,
            status_code=400,
        )
    return redirect(f"/console/projects/{project_id}/devices/{device_id}?saved=1")


def _device_page(
    request: Request,
    context: ContextDep,
    visitor: Visitor,
    project_id: str,
    device_id: str,
    *,
    draft: str | None = None,
    state_error: str = "",
    status_code: int = 200,
) -> Response:
    device = devices.get_device(context.db, project_id, device_id)
    document = state.get_state(context.db, device_id, (), project_id=project_id)
    records = stream.list_stream_records(
        context.db, project_id, device_id, per_page=STREAM_RECORDS_SHOWN
    )
    return render(
        request,
        "device.html",
        {
            "title": f"Device {device.name}",
            "project": projects.get_project(context.db, project_id),
            "section": "devices",
            "device": device,
            "issued": issued_certificates.list_issued_certificates(
                context.db, project_id, device_id
            ),
            "presented": _presented_certificates(context, project_id, device),
            "document": document,
            "draft": draft
            if draft is not None
            else json.dumps(document, indent=2, sort_keys=True),
            "state_error": state_error,
            "saved": request.query_params.get("saved") == "1",
            "stream_records": records.items,
        },
        visitor=visitor,
        status_code=status_code,
    )


def _presented_certificates(
    context: ContextDep, project_id: str, device: devices.DeviceRecord
) -> list[connections.ConnectionEvent]:
    """Return the latest accepted handshake of each certificate, newest first."""
    if device.certificate_id is None:
        return []
    handshakes = connections.list_events(
        context.db,
        project_id,
        result=connections.ConnectionResult.ACCEPTED,
        certificate_id=device.certificate_id,
        limit=HANDSHAKES_READ,
    )
    latest: dict[str, connections.ConnectionEvent] = {}
    for event in handshakes:
        if event.fingerprint is not None and event.fingerprint not in latest:
            latest[event.fingerprint] = event
    return list(latest.values())
