"""``GET /v1/server-ca``: the server CA that devices must trust, as PEM.

Devices verify the gateway's certificate chain against this root, so it
is what their firmware carries in place of Golioth's root certificates.
It is the self-signed certificate at the top of the chain that
``fleetgate serve`` presents: the development server CA unless
``--server-cert`` was given. A chain given without its root gets 404,
because only its operator has that root. Any valid API key may read it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Response

from fleetgate.api.auth import CallerDep
from fleetgate.api.context import ContextDep
from fleetgate.errors import NotFound

router = APIRouter(prefix="/v1", tags=["server"])

PEM_MEDIA_TYPE = "application/x-pem-file"


@router.get(
    "/server-ca",
    summary="Get the server CA that devices must trust",
    response_class=Response,
    responses={200: {"content": {PEM_MEDIA_TYPE: {}}}},
)
def get_server_ca(context: ContextDep, caller: CallerDep) -> Response:
    """Return the self-signed certificates of the server chain, PEM-encoded."""
    roots = [cert for cert in context.server_chain if cert.issuer == cert.subject]
    if not roots:
        raise NotFound(
            "cannot return the server CA: the server certificate chain has no "
            "self-signed root, so give devices the root CA of the chain passed "
            "to fleetgate serve with --server-cert"
        )
    pem = b"".join(cert.public_bytes(Encoding.PEM) for cert in roots)
    return Response(pem, media_type=PEM_MEDIA_TYPE)
