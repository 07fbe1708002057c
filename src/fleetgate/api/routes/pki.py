"""PKI provider status and the certificates issued to a device, read-only.

``GET /v1/projects/{id}/pki-provider`` returns the stored provider
configuration and the status of its last check or sync, without
checking the provider again (``fleetgate provider status`` does that).
The settings never contain secrets. ``GET .../devices/{id}/certificates``
lists what certificate rotation issued to a device, newest first.
Changing the provider is done with ``fleetgate provider set`` for now.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.paging import DEFAULT_PER_PAGE, PageQuery, PerPageQuery, page_of
from fleetgate.api.schemas import ApiModel, One, Page
from fleetgate.store import issued_certificates, pki_providers
from fleetgate.store.issued_certificates import IssuedCertificateRecord
from fleetgate.store.pki_providers import ProviderConfigRecord

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["pki"])


class PkiProvider(ApiModel):
    """A project's PKI provider and the outcome of its last check or sync."""

    kind: str
    status: str
    error: str | None
    ca_count: int
    max_rotations_per_hour: int
    last_sync_at: dt.datetime | None
    settings: dict[str, Any]

    @classmethod
    def of(cls, record: ProviderConfigRecord) -> PkiProvider:
        """Render a stored configuration."""
        return cls(
            kind=record.kind,
            status=record.status,
            error=record.error,
            ca_count=record.ca_count,
            max_rotations_per_hour=record.max_rotations_per_hour,
            last_sync_at=record.last_sync_at,
            settings=record.settings,
        )


class IssuedCertificate(ApiModel):
    """A certificate that rotation issued to a device."""

    id: str
    serial: str
    fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    provider: str
    created_at: dt.datetime

    @classmethod
    def of(cls, record: IssuedCertificateRecord) -> IssuedCertificate:
        """Render a stored issued certificate."""
        return cls(
            id=record.id,
            serial=record.serial,
            fingerprint=record.fingerprint,
            not_before=record.not_before,
            not_after=record.not_after,
            provider=record.provider,
            created_at=record.created_at,
        )


@router.get("/pki-provider", summary="Show the project's PKI provider")
def get_provider(context: ContextDep, scope: ScopeDep) -> One[PkiProvider]:
    """Return the provider configuration and its last known status."""
    record = pki_providers.get_provider_config(context.db, scope.project_id)
    return One[PkiProvider](data=PkiProvider.of(record))


@router.get(
    "/devices/{device_id}/certificates",
    summary="List the certificates issued to a device",
)
def list_device_certificates(
    device_id: str,
    context: ContextDep,
    scope: ScopeDep,
    page: PageQuery = 0,
    per_page: PerPageQuery = DEFAULT_PER_PAGE,
) -> Page[IssuedCertificate]:
    """Return one page of the device's issued certificates, newest first."""
    records = issued_certificates.list_issued_certificates(
        context.db, scope.project_id, device_id
    )
    return Page[IssuedCertificate](
        items=[IssuedCertificate.of(r) for r in page_of(records, page, per_page)],
        page=page,
        per_page=per_page,
        total=len(records),
    )
