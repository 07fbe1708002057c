"""Certificate rotation on ``POST v1/csr``: a DER CSR in, a DER certificate out.

The request body is a DER PKCS#10 request with Content-Format
application/octet-stream (42); a request without the option is read the
same way. The response is 2.04 Changed with the DER certificate, also
Content-Format 42. Golioth's firmware SDK (golioth-firmware-sdk,
``src/pki.c`` and the Zephyr certificate rotation sample) posts to
``v1/csr`` with octet-stream, treats any 2.xx response as success and
uses its payload as the DER certificate, so 2.04 and 2.01 both work with
it. 2.04 is used because no resource with a location is created (RFC
7252, section 5.8.2).

Errors, each with a diagnostic payload that gives the reason:

- 4.00 for a malformed CSR or a bad self-signature;
- 4.03 for a subject that names another project or certificate ID, and
  on a session authenticated with a pre-shared key, which has no
  certificate to rotate;
- 4.22 for a key or signature algorithm that the policy rejects;
- 4.29 with Max-Age over the hourly rotation limit;
- 5.01 when the project's provider does not issue;
- 5.03 with Max-Age when the provider is busy or unreachable;
- 5.00 when the provider fails otherwise.

Limitation: block-wise transfer (RFC 7959) is not served yet, so the
CSR and the certificate each travel in one CoAP message. ECDSA and
RSA-2048 CSRs and certificates fit in one datagram. A client that sends
a larger CSR block-wise gets 4.02 Bad Option, as Debian's libcoap 4.3.1
client does with the 1128-byte CSR of an RSA-4096 key. A certificate
larger than one datagram (from an RSA-4096 CA, say) is sent in a larger
datagram that the IP layer fragments. On a path that drops IP fragments
such a device does not get its certificate. It sees a timeout and keeps
its old certificate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from aiocoap.numbers.codes import Code
from cryptography.hazmat.primitives.serialization import Encoding

from fleetgate import metrics, rotation
from fleetgate.errors import (
    DeviceRejected,
    FleetgateError,
    ProviderFailed,
    ProviderUnavailable,
    RateLimited,
    StoreUnavailable,
)
from fleetgate.gateway.resources import OCTET_STREAM, CoapRequest, CoapResponse
from fleetgate.pki.csr import DeviceIdentity
from fleetgate.store.database import Database

log = logging.getLogger(__name__)

PREFIX = "v1"
PATH = ("v1", "csr")
# An estimate of what a response adds to its payload: DTLS record header,
# explicit nonce and tag (up to 37 bytes for AES-GCM, RFC 6347 4.1 and
# RFC 5288), CoAP header, token and options (about 20 bytes), with room.
RESPONSE_OVERHEAD = 64


class CsrService:
    """Serves ``POST v1/csr`` for authenticated devices."""

    def __init__(self, db: Database, *, mtu: int) -> None:
        self._db = db
        self._max_payload = mtu - RESPONSE_OVERHEAD

    async def handle(self, request: CoapRequest) -> CoapResponse:
        """Check the CSR, have it issued and return the DER certificate."""
        if request.path != PATH:
            return CoapResponse.diagnostic(
                Code.NOT_FOUND, f"no resource at /{'/'.join(request.path)}"
            )
        if request.method is not Code.POST:
            return CoapResponse.diagnostic(
                Code.METHOD_NOT_ALLOWED,
                f"{request.method.name} is not allowed on v1/csr, use POST",
            )
        if request.content_format not in (None, OCTET_STREAM):
            return CoapResponse.diagnostic(
                Code.UNSUPPORTED_CONTENT_FORMAT,
                f"Content-Format {request.content_format} is not accepted, "
                f"send a DER CSR as application/octet-stream ({OCTET_STREAM})",
            )

        device = request.device
        if device.psk_id is not None or device.certificate_id is None:
            return CoapResponse.diagnostic(
                Code.FORBIDDEN,
                "cannot rotate a certificate on this session: it was "
                "authenticated with a pre-shared key; connect with the "
                "device certificate to rotate it",
            )
        identity = DeviceIdentity(
            project_id=device.project_id,
            certificate_id=device.certificate_id,
            device_id=device.device_id,
        )
        try:
            result = await asyncio.to_thread(
                rotation.rotate, self._db, identity, request.payload
            )
        except FleetgateError as exc:
            return self._refusal(identity, exc)

        metrics.CSRS.labels(result="issued", reason="none").inc()
        der = result.certificate.public_bytes(Encoding.DER)
        if len(der) > self._max_payload:
            log.warning(
                "certificate may not fit one datagram project=%s device=%s "
                "size=%d budget=%d; devices behind links that drop IP "
                "fragments will not receive it",
                identity.project_id,
                identity.device_id,
                len(der),
                self._max_payload,
            )
        return CoapResponse(Code.CHANGED, der, OCTET_STREAM)

    def _refusal(self, device: DeviceIdentity, exc: FleetgateError) -> CoapResponse:
        metrics.CSRS.labels(result="rejected", reason=exc.reason).inc()
        fields = (
            f"project={device.project_id} device={device.device_id} "
            f"cert_id={device.certificate_id} reason={exc.reason}"
        )
        if isinstance(exc, ProviderFailed):
            log.error("certificate not issued %s error=%s", fields, exc.message)
        elif isinstance(exc, ProviderUnavailable | RateLimited | DeviceRejected):
            log.warning("certificate not issued %s error=%s", fields, exc.message)
        else:
            log.info("certificate not issued %s error=%s", fields, exc.message)

        response = CoapResponse.diagnostic(coap_code(exc.coap_code), exc.message)
        if isinstance(exc, RateLimited | ProviderUnavailable | StoreUnavailable):
            # RFC 7252, section 5.10.5: Max-Age is when the device may retry.
            response = dataclasses.replace(response, max_age=exc.retry_after)
        return response


def coap_code(dotted: str) -> Code:
    """Return the ``Code`` of a dotted response code such as ``"4.29"``."""
    klass, detail = dotted.split(".")
    return Code(int(klass) << 5 | int(detail))
