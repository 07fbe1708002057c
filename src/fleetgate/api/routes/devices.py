"""``/v1/projects/{id}/devices``: create, list, read, change, delete devices.

A device created here by name is adopted by the first certificate whose
ID equals that name, as with ``fleetgate device create``. A device's
``certificateId`` can be set once, here or by its first connection, and
never changed: a different value is 409 ``certificate_id_immutable``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.paging import DEFAULT_PER_PAGE, PageQuery, PerPageQuery
from fleetgate.api.schemas import (
    Device,
    DeviceCreate,
    DeviceUpdate,
    Empty,
    One,
    Page,
)
from fleetgate.errors import Reason
from fleetgate.store import devices

router = APIRouter(prefix="/v1/projects/{project_id}/devices", tags=["devices"])

DeviceNameQuery = Annotated[
    str | None,
    Query(alias="deviceName", description="Only the device with exactly this name."),
]
TermQuery = Annotated[
    str | None,
    Query(description="Only devices whose name contains this, ignoring case."),
]


@router.get("", summary="List a project's devices")
def list_devices(
    context: ContextDep,
    scope: ScopeDep,
    device_name: DeviceNameQuery = None,
    term: TermQuery = None,
    page: PageQuery = 0,
    per_page: PerPageQuery = DEFAULT_PER_PAGE,
) -> Page[Device]:
    """Return one page of the project's devices, ordered by name."""
    result = devices.list_devices(
        context.db,
        scope.project_id,
        name=term,
        exact_name=device_name,
        page=page,
        per_page=per_page,
    )
    return Page[Device](
        items=[Device.of(record) for record in result.items],
        page=result.page,
        per_page=result.per_page,
        total=result.total,
    )


@router.post("", summary="Create a device before it first connects")
def create_device(
    body: DeviceCreate, context: ContextDep, scope: ScopeDep
) -> One[Device]:
    """Create a device; a certificate whose ID is its name adopts it."""
    record = devices.create_device(
        context.db,
        scope.project_id,
        body.name,
        certificate_id=body.certificate_id,
        hardware_ids=body.hardware_ids,
        tags=body.tag_ids,
        metadata=body.metadata,
        actor=scope.caller.actor,
    )
    return One[Device](data=Device.of(record))


@router.get("/{device_id}", summary="Get a device")
def get_device(device_id: str, context: ContextDep, scope: ScopeDep) -> One[Device]:
    """Return one device, with what its last certificate showed."""
    record = devices.get_device(context.db, scope.project_id, device_id)
    return One[Device](data=Device.of(record))


@router.patch("/{device_id}", summary="Change a device")
async def update_device(
    device_id: str, body: DeviceUpdate, context: ContextDep, scope: ScopeDep
) -> One[Device]:
    """Change the fields given in the body and keep the others.

    Disabling a device closes its open sessions at once.
    """
    record = await asyncio.to_thread(
        devices.update_device,
        context.db,
        scope.project_id,
        device_id,
        name=body.name,
        enabled=body.enabled,
        certificate_id=body.certificate_id,
        hardware_ids=body.hardware_ids,
        tags=body.tag_ids,
        metadata=body.metadata,
        add_hardware_ids=body.add_hardware_id,
        remove_hardware_ids=body.remove_hardware_id,
        add_tags=body.add_tag_id,
        remove_tags=body.remove_tag_id,
        actor=scope.caller.actor,
    )
    if body.enabled is False and context.close_sessions is not None:
        await context.close_sessions(
            scope.project_id, [record.id], Reason.DEVICE_DISABLED
        )
    return One[Device](data=Device.of(record))


@router.delete("/{device_id}", summary="Delete a device and its state")
async def delete_device(device_id: str, context: ContextDep, scope: ScopeDep) -> Empty:
    """Delete a device and close its open sessions.

    Its certificate creates a new record if it connects again.
    """
    await asyncio.to_thread(
        devices.delete_device,
        context.db,
        scope.project_id,
        device_id,
        actor=scope.caller.actor,
    )
    if context.close_sessions is not None:
        await context.close_sessions(
            scope.project_id, [device_id], Reason.DEVICE_DELETED
        )
    return Empty()
