"""``/v1/projects/{id}/connections``: the project's connection log.

Events are listed newest first. Paging uses a cursor rather than page
numbers, because new events arrive while a client reads: ``limit`` sets
the page size and ``before`` the ID of the last event already read.
The body has the usual list shape; its ``page`` is always 0 and
``total`` counts every event that matches the filters.
``.../connections/clones`` lists the certificate IDs suspected of being
cloned.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.schemas import ApiModel, Page
from fleetgate.store import connections
from fleetgate.store.connections import CloneSuspect, ConnectionEvent, ConnectionResult

router = APIRouter(
    prefix="/v1/projects/{project_id}/connections", tags=["connection log"]
)

DEFAULT_LIMIT = 50


class ConnectionEventItem(ApiModel):
    """A handshake accepted or rejected, a session end, or a suspected clone."""

    id: int
    project_id: str
    device_id: str | None
    certificate_id: str | None
    peer: str
    result: str
    reason: str | None
    fingerprint: str | None
    other_peer: str | None
    created_at: dt.datetime

    @classmethod
    def of(cls, event: ConnectionEvent) -> ConnectionEventItem:
        """Render a stored event."""
        return cls(**{field: getattr(event, field) for field in cls.model_fields})


class CloneSuspectItem(ApiModel):
    """A certificate ID seen in live sessions from several addresses."""

    certificate_id: str
    device_id: str | None
    addresses: list[str]
    detected_at: dt.datetime

    @classmethod
    def of(cls, suspect: CloneSuspect) -> CloneSuspectItem:
        """Render a clone suspect."""
        return cls(
            certificate_id=suspect.certificate_id,
            device_id=suspect.device_id,
            addresses=list(suspect.addresses),
            detected_at=suspect.detected_at,
        )


@router.get("", summary="List a project's connection log")
def list_connections(
    context: ContextDep,
    scope: ScopeDep,
    result: Annotated[
        ConnectionResult | None, Query(description="Only events with this result.")
    ] = None,
    reason: Annotated[
        str | None,
        Query(description="Only events with this reason code, such as unknown_ca."),
    ] = None,
    certificate_id: Annotated[
        str | None, Query(description="Only events of this certificate ID.")
    ] = None,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=connections.MAX_LIMIT,
            description=f"Events to return, 1-{connections.MAX_LIMIT}.",
        ),
    ] = DEFAULT_LIMIT,
    before: Annotated[
        int | None,
        Query(ge=1, description="Only events older than the event of this ID."),
    ] = None,
) -> Page[ConnectionEventItem]:
    """Return the project's newest events that match the filters."""
    filters = {
        "result": result.value if result is not None else None,
        "reason": reason,
        "certificate_id": certificate_id,
    }
    events = connections.list_events(
        context.db, scope.project_id, limit=limit, before_id=before, **filters
    )
    total = connections.count_events(context.db, scope.project_id, **filters)
    return Page[ConnectionEventItem](
        items=[ConnectionEventItem.of(event) for event in events],
        page=0,
        per_page=limit,
        total=total,
    )


@router.get("/clones", summary="List certificate IDs suspected of being cloned")
def list_clone_suspects(context: ContextDep, scope: ScopeDep) -> Page[CloneSuspectItem]:
    """Return one entry per suspected certificate ID, latest detection first."""
    suspects = connections.clone_suspects(context.db, scope.project_id)
    return Page[CloneSuspectItem](
        items=[CloneSuspectItem.of(suspect) for suspect in suspects],
        page=0,
        per_page=max(len(suspects), 1),
        total=len(suspects),
    )
