"""``POST /v1/projects/{id}/explain``: what the gateway would do with a chain.

The body is the chain a device would send, as PEM: the device
certificate first, then any intermediates. Nothing is changed. The
response names the anchor and its depth, every rule of the verification
policy with its outcome and reason code, the association rule that would
apply, and the certificate that expires first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.explain import explain_certificate
from fleetgate.pki.identity import load_certificates

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["explain"])

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/x-pem-file": {"schema": {"type": "string"}}},
    }
}


@router.post(
    "/explain",
    summary="Explain how a device chain would be treated",
    openapi_extra=_BODY,
)
async def explain(
    request: Request, context: ContextDep, scope: ScopeDep
) -> dict[str, Any]:
    """Return ``{"data": explanation}`` for the PEM chain in the body."""
    chain = load_certificates(await request.body())
    explanation = await asyncio.to_thread(
        explain_certificate, context.db, scope.project_id, chain
    )
    return {"data": explanation.to_json()}
