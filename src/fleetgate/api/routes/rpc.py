"""``POST /v1/projects/{id}/devices/{id}/rpc``: call a method on a device.

The call reaches the device only when it is connected to the gateway of
this same ``fleetgate serve`` process and observes ``.rpc``, as Golioth's
firmware SDK does once the application registers a method. Otherwise
the response is 409 with reason ``device_not_connected``. A device that
does not reply within ``timeoutSeconds`` gives 504 with reason
``rpc_timed_out``. Each call to a device of the project is audited
with its method, without its parameters, before it is sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ApiContext, ContextDep
from fleetgate.api.schemas import ApiModel, One
from fleetgate.errors import Conflict, Reason
from fleetgate.gateway.services.rpc import MAX_TIMEOUT_SECONDS
from fleetgate.store import audit, devices

router = APIRouter(prefix="/v1/projects/{project_id}/devices", tags=["rpc"])

DEFAULT_TIMEOUT_SECONDS = 10.0


class RpcCall(ApiModel):
    """A method to call on a device, its parameters and how long to wait."""

    method: str = Field(min_length=1, max_length=128)
    params: list[Any] = Field(default_factory=list)
    timeout_seconds: float = Field(
        default=DEFAULT_TIMEOUT_SECONDS, gt=0, le=MAX_TIMEOUT_SECONDS
    )


class RpcReply(ApiModel):
    """The device's reply: its status code and the detail it returned."""

    id: str
    status_code: int
    detail: Any = None


@router.post("/{device_id}/rpc", summary="Call a method on a connected device")
async def call_device(
    device_id: str, body: RpcCall, context: ContextDep, scope: ScopeDep
) -> One[RpcReply]:
    """Send the call, wait for the device's reply and return it."""
    # Raises NotFound for a device of another project, before anything is sent.
    await asyncio.to_thread(devices.get_device, context.db, scope.project_id, device_id)
    await asyncio.to_thread(
        _audit_call, context, scope.project_id, device_id, scope.caller.actor, body
    )
    if context.rpc_call is None:
        raise Conflict(
            f"cannot call device {device_id!r}: no device gateway runs in this "
            "process, so start the API with fleetgate serve",
            reason=Reason.DEVICE_NOT_CONNECTED,
        )
    result = await context.rpc_call(
        scope.project_id, device_id, body.method, body.params, body.timeout_seconds
    )
    return One(
        data=RpcReply(
            id=result.id, status_code=result.status_code, detail=result.detail
        )
    )


def _audit_call(
    context: ApiContext, project_id: str, device_id: str, actor: str, body: RpcCall
) -> None:
    with context.db.session() as session:
        audit.record(
            session,
            actor=actor,
            action="device.rpc",
            project_id=project_id,
            target_type="device",
            target_id=device_id,
            details={"method": body.method},
        )
