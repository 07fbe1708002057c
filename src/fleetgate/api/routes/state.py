"""``/v1/projects/{id}/devices/{id}/data/{path}``: a device's LightDB State.

These routes read and write the same document that the device reaches
on ``.d/<path>`` over CoAP. ``GET`` returns ``{"data": value}``.
``POST`` and ``PUT`` both replace the value at the path with the JSON
request body, creating the objects on the way, and return it as
``{"data": value}``. ``DELETE`` removes it and returns ``{}``, also
when nothing was there. ``.../data`` alone is the whole document, which
must stay a JSON object.

A value may be any JSON, null included, up to the size that a device
can read back in one CoAP message. With its path it may nest at most
32 levels (:data:`fleetgate.store.state.MAX_DEPTH`). JSON has no NaN or
infinity, so those literals are rejected.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.schemas import Empty
from fleetgate.errors import InvalidInput, PayloadTooLarge
from fleetgate.gateway.services.state import MAX_VALUE_BYTES
from fleetgate.store import state

router = APIRouter(
    prefix="/v1/projects/{project_id}/devices/{device_id}/data",
    tags=["lightdb-state"],
)

# FastAPI cannot see a body read from the request, so it is declared here.
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "Any JSON value; at the document root, an object.",
        "content": {
            "application/json": {
                "schema": {},
                "examples": {
                    "object": {"value": {"temp": 21.5, "unit": "C"}},
                    "number": {"value": 30},
                },
            }
        },
    }
}


@router.get("", summary="Read a device's whole state document")
@router.get("/{path:path}", summary="Read the state value at a path")
async def read_state(
    device_id: str, context: ContextDep, scope: ScopeDep, path: str = ""
) -> JSONResponse:
    """Return ``{"data": value}``, or 404 when nothing is at the path."""
    value = await asyncio.to_thread(
        state.get_state,
        context.db,
        device_id,
        split_path(path),
        project_id=scope.project_id,
    )
    # Encoded with json.dumps rather than FastAPI's recursive encoder,
    # which overflows the stack on a document stored before the depth
    # limit existed.
    return JSONResponse({"data": value})


@router.post("", summary="Replace the whole state document", openapi_extra=_BODY)
@router.post("/{path:path}", summary="Set the value at a path", openapi_extra=_BODY)
@router.put("", summary="Replace the whole state document", openapi_extra=_BODY)
@router.put("/{path:path}", summary="Set the value at a path", openapi_extra=_BODY)
async def write_state(
    request: Request,
    device_id: str,
    context: ContextDep,
    scope: ScopeDep,
    path: str = "",
) -> dict[str, Any]:
    """Replace the value at the path with the body and return ``{"data": value}``."""
    value = parse_value(await request.body())

    await asyncio.to_thread(
        state.set_state,
        context.db,
        device_id,
        split_path(path),
        value,
        project_id=scope.project_id,
        actor=scope.caller.actor,
    )
    return {"data": value}


@router.delete("", summary="Empty a device's state document")
@router.delete("/{path:path}", summary="Remove the state value at a path")
async def delete_state(
    device_id: str, context: ContextDep, scope: ScopeDep, path: str = ""
) -> Empty:
    """Remove the value at the path; nothing there is not an error."""
    await asyncio.to_thread(
        state.delete_state,
        context.db,
        device_id,
        split_path(path),
        project_id=scope.project_id,
        missing_ok=True,
        actor=scope.caller.actor,
    )
    return Empty()


def split_path(path: str) -> tuple[str, ...]:
    """Split a URL path into state keys; a trailing slash is ignored."""
    trimmed = path[:-1] if path.endswith("/") else path
    return tuple(trimmed.split("/")) if trimmed else ()


def parse_value(body: bytes) -> Any:
    """Parse a request body as one JSON value, or raise InvalidInput."""
    if len(body) > MAX_VALUE_BYTES:
        raise PayloadTooLarge(
            f"cannot store state value of {len(body)} bytes: the maximum is "
            f"{MAX_VALUE_BYTES}, which a device can read in one CoAP message"
        )
    if not body.strip():
        raise InvalidInput("cannot store state: the body is empty; send a JSON value")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except ValueError as exc:
        raise InvalidInput(f"cannot store state: invalid JSON body ({exc})") from exc
    except RecursionError as exc:
        raise InvalidInput(
            "cannot store state: the JSON body nests too deeply to parse, "
            f"and a document may nest at most {state.MAX_DEPTH} levels"
        ) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
