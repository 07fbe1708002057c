"""``/v1/projects/{id}/quarantines``: disable a batch or a CA's devices at once.

``POST`` with ``{"batch": NAME}`` or ``{"caFingerprint": HEX}`` disables
every matching device and, when the device gateway runs in this process,
closes their open DTLS sessions with close_notify at once; the response
counts them in ``sessionsClosed``. Sessions served by other processes end
within the recheck interval. ``POST
.../{id}/release`` re-enables exactly the devices the quarantine
disabled. Both are audited. An unknown batch, or a fingerprint of no
registered CA certificate and of no CA in a device's recorded chain,
gets 404 and starts nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from fastapi import APIRouter
from pydantic import Field

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.schemas import ApiModel, One, Page
from fleetgate.errors import Reason
from fleetgate.store import quarantines

router = APIRouter(prefix="/v1/projects/{project_id}/quarantines", tags=["quarantines"])


class QuarantineCreate(ApiModel):
    """The target of a quarantine: a manifest batch or a CA fingerprint."""

    batch: str | None = Field(default=None, max_length=128)
    ca_fingerprint: str | None = Field(default=None, max_length=200)


class Quarantine(ApiModel):
    """A quarantine and the devices it holds, or restored once released."""

    id: str
    kind: str
    target: str
    created_at: dt.datetime
    released_at: dt.datetime | None
    device_ids: list[str]
    sessions_closed: int | None = None

    @classmethod
    def of(
        cls, record: quarantines.QuarantineRecord, sessions_closed: int | None = None
    ) -> Quarantine:
        """Render a stored quarantine."""
        return cls(
            id=record.id,
            kind=record.kind,
            target=record.target,
            created_at=record.created_at,
            released_at=record.released_at,
            device_ids=list(record.device_ids),
            sessions_closed=sessions_closed,
        )


@router.post("", summary="Quarantine a batch or a CA's devices")
async def start(
    body: QuarantineCreate, context: ContextDep, scope: ScopeDep
) -> One[Quarantine]:
    """Disable the matching devices and close their sessions."""
    record = await asyncio.to_thread(
        quarantines.start_quarantine,
        context.db,
        scope.project_id,
        batch=body.batch,
        ca_fingerprint=body.ca_fingerprint,
        actor=scope.caller.actor,
    )
    closed = None
    if context.close_sessions is not None:
        closed = await context.close_sessions(
            scope.project_id, record.device_ids, Reason.QUARANTINED
        )
    return One(data=Quarantine.of(record, closed))


@router.get("", summary="List quarantines")
def list_(context: ContextDep, scope: ScopeDep) -> Page[Quarantine]:
    """Return the project's quarantines, newest first."""
    records = quarantines.list_quarantines(context.db, scope.project_id)
    return Page[Quarantine](
        items=[Quarantine.of(record) for record in records],
        page=0,
        per_page=max(len(records), 1),
        total=len(records),
    )


@router.get("/{quarantine_id}", summary="Get a quarantine")
def get(quarantine_id: str, context: ContextDep, scope: ScopeDep) -> One[Quarantine]:
    """Return one quarantine with the devices it holds."""
    record = quarantines.get_quarantine(context.db, scope.project_id, quarantine_id)
    return One(data=Quarantine.of(record))


@router.post("/{quarantine_id}/release", summary="Release a quarantine")
def release(
    quarantine_id: str, context: ContextDep, scope: ScopeDep
) -> One[Quarantine]:
    """Re-enable the devices this quarantine disabled; ``deviceIds`` lists them."""
    record = quarantines.release_quarantine(
        context.db, scope.project_id, quarantine_id, actor=scope.caller.actor
    )
    return One(data=Quarantine.of(record))
