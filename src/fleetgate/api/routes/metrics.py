"""``/metrics``: the process's Prometheus metrics (see :mod:`fleetgate.metrics`).

The figures span every project, so reading them takes an admin API key
(``x-api-key`` or ``Authorization: Bearer``, which Prometheus sends with
``authorization: {credentials: ...}``), and a project key gets 403.
``fleetgate serve --metrics-without-key`` sets
``app.state.metrics_without_key``. Clients on a loopback address, such
as a Prometheus on the same host, then read them without a key. Other
clients still need an admin key.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Annotated

from fastapi import APIRouter, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials

from fleetgate import metrics
from fleetgate.api import auth
from fleetgate.api.context import ContextDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Read the Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def read_metrics(
    request: Request,
    context: ContextDep,
    api_key: Annotated[str | None, Security(auth.api_key_header)],
    bearer: Annotated[
        HTTPAuthorizationCredentials | None, Security(auth.bearer_header)
    ],
) -> Response:
    """Return every metric in the Prometheus text format."""
    open_to_loopback = getattr(request.app.state, "metrics_without_key", False)
    if not (open_to_loopback and _from_loopback(request)):
        caller = await asyncio.to_thread(
            auth.authenticate, request, context, api_key, bearer
        )
        caller.require_admin("read metrics")

    # Rendered on the event loop, where the gateway's session table lives.
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)


def _from_loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
