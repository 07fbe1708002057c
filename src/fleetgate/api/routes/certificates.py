"""``/v1/projects/{id}/certificates``: a project's CA certificates.

An upload runs the same checks as ``fleetgate ca upload``, and each
rejection has its own ``code``: ``invalid_base64``,
``malformed_certificate``, ``not_a_ca``, ``root_not_self_signed``,
``intermediate_self_signed``, ``ca_expired``, ``weak_key`` and the other
policy reasons, and 409 ``ca_already_registered``. A ``certFile`` over
64 KiB gets 413 ``payload_too_large`` before it is parsed. A CRL loaded
with ``PUT .../certificates/{certId}/crl`` must be signed by that CA
certificate (400 ``crl_not_from_ca`` otherwise, ``malformed_crl`` for
one that does not parse). Every change is passed to the gateway's trust
cache at once, so the next handshake uses it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii

from fastapi import APIRouter

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ApiContext, ContextDep
from fleetgate.api.paging import DEFAULT_PER_PAGE, PageQuery, PerPageQuery, page_of
from fleetgate.api.schemas import (
    Certificate,
    CertificateUpdate,
    CertificateUpload,
    Empty,
    One,
    Page,
    RevocationList,
    RevocationListUpload,
)
from fleetgate.errors import InvalidInput, NotFound, Reason
from fleetgate.store import certificates, quarantines, revocation

router = APIRouter(
    prefix="/v1/projects/{project_id}/certificates", tags=["certificates"]
)


@router.get("", summary="List a project's CA certificates")
def list_certificates(
    context: ContextDep,
    scope: ScopeDep,
    page: PageQuery = 0,
    per_page: PerPageQuery = DEFAULT_PER_PAGE,
) -> Page[Certificate]:
    """Return one page of the project's CA certificates, oldest first."""
    records = certificates.list_ca_certificates(context.db, scope.project_id)
    return Page[Certificate](
        items=[Certificate.of(record) for record in page_of(records, page, per_page)],
        page=page,
        per_page=per_page,
        total=len(records),
    )


@router.post("", summary="Register a CA certificate")
def upload_certificate(
    body: CertificateUpload, context: ContextDep, scope: ScopeDep
) -> One[Certificate]:
    """Check a root or intermediate CA certificate and trust it in the project."""
    encoded = decode_base64(body.cert_file)

    record = certificates.add_ca_certificate(
        context.db,
        scope.project_id,
        encoded,
        cert_type=body.cert_type,
        actor=scope.caller.actor,
    )
    context.trust_changed(scope.project_id)
    return One[Certificate](data=Certificate.of(record))


@router.get("/{certificate_id}", summary="Get a CA certificate")
def get_certificate(
    certificate_id: str, context: ContextDep, scope: ScopeDep
) -> One[Certificate]:
    """Return one CA certificate of the project."""
    record = certificates.get_ca_certificate(
        context.db, scope.project_id, certificate_id
    )
    return One[Certificate](data=Certificate.of(record))


@router.patch("/{certificate_id}", summary="Enable or disable a CA certificate")
async def update_certificate(
    certificate_id: str,
    body: CertificateUpdate,
    context: ContextDep,
    scope: ScopeDep,
) -> One[Certificate]:
    """Start or stop trusting a CA certificate without removing it.

    Disabling it closes the open sessions of the devices anchored at it.
    """
    record = await asyncio.to_thread(
        certificates.set_ca_certificate_enabled,
        context.db,
        scope.project_id,
        certificate_id,
        body.enabled,
        actor=scope.caller.actor,
    )
    context.trust_changed(scope.project_id)
    if not body.enabled:
        await _close_anchored_sessions(
            context, scope.project_id, record, Reason.CA_DISABLED
        )
    return One[Certificate](data=Certificate.of(record))


@router.delete("/{certificate_id}", summary="Remove a CA certificate")
async def delete_certificate(
    certificate_id: str, context: ContextDep, scope: ScopeDep
) -> Empty:
    """Remove a CA certificate; chains that need it fail from now on.

    The open sessions of the devices anchored at it close at once.
    """
    record = await asyncio.to_thread(
        certificates.get_ca_certificate, context.db, scope.project_id, certificate_id
    )
    await asyncio.to_thread(
        certificates.delete_ca_certificate,
        context.db,
        scope.project_id,
        certificate_id,
        actor=scope.caller.actor,
    )
    context.trust_changed(scope.project_id)
    await _close_anchored_sessions(context, scope.project_id, record, Reason.CA_DELETED)
    return Empty()


async def _close_anchored_sessions(
    context: ApiContext,
    project_id: str,
    record: certificates.CaCertificateRecord,
    reason: Reason,
) -> None:
    if context.close_sessions is None:
        return
    device_ids = await asyncio.to_thread(
        quarantines.anchored_device_ids, context.db, project_id, record.fingerprint
    )
    await context.close_sessions(project_id, device_ids, reason)


@router.put("/{certificate_id}/crl", summary="Load a CRL for a CA certificate")
def load_crl(
    certificate_id: str,
    body: RevocationListUpload,
    context: ContextDep,
    scope: ScopeDep,
) -> One[RevocationList]:
    """Check a CRL against the CA certificate and reject the devices it lists."""
    encoded = decode_base64(body.crl_file, field="crlFile")

    record = revocation.load_revocation_list(
        context.db,
        scope.project_id,
        certificate_id,
        encoded,
        actor=scope.caller.actor,
    )
    context.trust_changed(scope.project_id)
    return One[RevocationList](data=RevocationList.of(record))


@router.get("/{certificate_id}/crl", summary="Get the CRL of a CA certificate")
def get_crl(
    certificate_id: str, context: ContextDep, scope: ScopeDep
) -> One[RevocationList]:
    """Return the CRL loaded for a CA certificate, or 404 when there is none."""
    record = revocation.get_revocation_list(
        context.db, scope.project_id, certificate_id
    )
    if record is None:
        raise NotFound(
            f"cannot find a CRL for CA certificate {certificate_id!r}: none was loaded"
        )
    return One[RevocationList](data=RevocationList.of(record))


def decode_base64(
    text: str, *, field: str = "certFile", encoded: str = "the PEM or DER file"
) -> bytes:
    """Decode standard base64, ignoring line breaks, or raise InvalidInput.

    ``encoded`` names what the field carries, for the error message.
    """
    # `base64 file` wraps its output every 76 characters.
    compact = "".join(text.split())
    try:
        decoded = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(
            f"cannot decode {field}: invalid base64 ({exc}); send "
            f"{encoded} encoded with standard base64",
            reason=Reason.INVALID_BASE64,
        ) from exc
    if not decoded:
        raise InvalidInput(
            f"cannot decode {field}: it is empty", reason=Reason.INVALID_BASE64
        )
    return decoded
