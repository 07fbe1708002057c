"""A project's PKI provider, and the certificates issued to a device.

``GET /v1/projects/{id}/pki-provider`` returns the stored provider
configuration and the status of its last check or sync, without
checking the provider again (``fleetgate provider status`` does that).
``PUT`` replaces the provider and syncs its CA certificates, and
``POST .../pki-provider/sync`` syncs them again. Both call the same
functions as ``fleetgate provider set`` and ``sync``. The settings never
contain secrets: aws-pca credentials come from boto3's own chain or from
a key file already on the server, and a request that sends a key is
rejected. ``GET .../devices/{id}/certificates`` lists what certificate
rotation issued to a device, newest first.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from pydantic import ConfigDict, Field

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.paging import DEFAULT_PER_PAGE, PageQuery, PerPageQuery, page_of
from fleetgate.api.schemas import ApiModel, One, Page
from fleetgate.errors import InvalidInput, ProviderFailed, ProviderUnavailable
from fleetgate.pki import issue
from fleetgate.providers.aws_pca import AwsPcaProvider
from fleetgate.providers.base import PkiProvider as Provider
from fleetgate.providers.base import ProviderKind
from fleetgate.providers.offline import OfflineProvider
from fleetgate.providers.sync import (
    local_provider,
    set_project_provider,
    sync_project,
)
from fleetgate.store import issued_certificates, pki_providers
from fleetgate.store.issued_certificates import IssuedCertificateRecord
from fleetgate.store.pki_providers import ProviderConfigRecord

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["pki"])

# The settings each kind takes. Any other setting is rejected with 400.
_KIND_SETTINGS = {
    ProviderKind.OFFLINE: frozenset[str](),
    ProviderKind.LOCAL: frozenset({"ca_key", "ca_cert", "days"}),
    ProviderKind.AWS_PCA: frozenset(
        {"region", "ca_arn", "endpoint_url", "credentials_file", "days"}
    ),
}


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


class ProviderSettings(ApiModel):
    """Settings of ``provider set``, with server paths and no secrets.

    Unknown names, such as ``secretAccessKey``, are rejected with 422
    rather than ignored, so a client that sends a key by mistake learns
    that it was not stored. Names may be snake_case, as the GET returns
    them, or camelCase.
    """

    model_config = ConfigDict(extra="forbid")

    ca_key: str | None = Field(
        default=None, description="local: absolute path of the CA key on the server."
    )
    ca_cert: str | None = Field(
        default=None,
        description="local: absolute path of the CA certificate on the server.",
    )
    region: str | None = Field(default=None, description="aws-pca: AWS region.")
    ca_arn: str | None = Field(default=None, description="aws-pca: issuing CA ARN.")
    endpoint_url: str | None = Field(
        default=None, description="aws-pca: endpoint URL instead of AWS's own."
    )
    credentials_file: str | None = Field(
        default=None,
        description="aws-pca: absolute path of a key file on the server, as "
        "written by 'fleetgate provider set --access-key-id'.",
    )
    days: int | None = Field(
        default=None, ge=1, description="Validity of issued certificates, in days."
    )


class PkiProviderUpdate(ApiModel):
    """A new PKI provider for a project."""

    kind: ProviderKind
    settings: ProviderSettings = Field(default_factory=ProviderSettings)
    max_rotations_per_hour: int | None = Field(
        default=None,
        ge=1,
        description="Certificates a device may get per hour; omitted keeps "
        "the current limit.",
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


@router.put("/pki-provider", summary="Set the project's PKI provider")
def set_provider(
    body: PkiProviderUpdate, context: ContextDep, scope: ScopeDep
) -> One[PkiProvider]:
    """Replace the provider, as ``fleetgate provider set`` does, and sync its CAs.

    The new configuration is kept even when the first sync fails. The
    response then has status ``error`` and the provider's message, and
    ``POST .../pki-provider/sync`` retries the sync.
    """
    provider = _build_provider(scope.project_id, body)
    set_project_provider(
        context.db,
        scope.project_id,
        provider,
        max_rotations_per_hour=body.max_rotations_per_hour,
        actor=scope.caller.actor,
    )
    try:
        sync_project(context.db, scope.project_id, actor=scope.caller.actor)
    except (ProviderFailed, ProviderUnavailable) as exc:
        log.warning(
            "provider sync after set failed project=%s kind=%s reason=%s error=%s",
            scope.project_id,
            body.kind,
            exc.reason,
            exc.message,
        )
    finally:
        context.trust_changed(scope.project_id)
    record = pki_providers.get_provider_config(context.db, scope.project_id)
    return One[PkiProvider](data=PkiProvider.of(record))


@router.post("/pki-provider/sync", summary="Sync the provider's CA certificates")
def sync_provider(context: ContextDep, scope: ScopeDep) -> One[PkiProvider]:
    """Register new CA certificates of the provider and disable withdrawn ones.

    A provider failure is stored on the configuration and returned as
    502 or 503, the latter with Retry-After. An offline provider is left
    as it is.
    """
    try:
        sync_project(context.db, scope.project_id, actor=scope.caller.actor)
    finally:
        context.trust_changed(scope.project_id)
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


def _build_provider(project_id: str, body: PkiProviderUpdate) -> Provider:
    """Build the provider a request describes, or raise InvalidInput."""
    sent_settings = body.settings.model_dump(by_alias=False, exclude_none=True)
    allowed = _KIND_SETTINGS[body.kind]
    extra = sorted(set(sent_settings) - allowed)
    if extra:
        raise InvalidInput(
            f"cannot set {body.kind} provider: settings {', '.join(extra)} "
            f"do not apply; {body.kind} takes "
            f"{', '.join(sorted(allowed)) or 'no settings'}"
        )
    days = body.settings.days or issue.DEFAULT_DAYS

    if body.kind is ProviderKind.LOCAL:
        ca_key = _server_path(body.kind, "ca_key", body.settings.ca_key)
        ca_cert = _server_path(body.kind, "ca_cert", body.settings.ca_cert)
        return local_provider(ca_key, ca_cert, days=days)

    if body.kind is ProviderKind.AWS_PCA:
        if not body.settings.region or not body.settings.ca_arn:
            raise InvalidInput(
                "cannot set aws-pca provider: settings region and ca_arn are required"
            )
        credentials_file = None
        if body.settings.credentials_file is not None:
            credentials_file = _server_path(
                body.kind, "credentials_file", body.settings.credentials_file
            )
            if not credentials_file.is_file():
                raise InvalidInput(
                    f"cannot set aws-pca provider: credentials file "
                    f"{credentials_file} does not exist on the server; create "
                    f"it with 'fleetgate provider set --project {project_id} "
                    "aws-pca --access-key-id ...'"
                )
        return AwsPcaProvider(
            region=body.settings.region,
            ca_arn=body.settings.ca_arn,
            endpoint_url=body.settings.endpoint_url,
            credentials_file=credentials_file,
            days=days,
        )

    return OfflineProvider()


def _server_path(kind: ProviderKind, name: str, value: str | None) -> Path:
    # Relative paths would depend on the server's working directory.
    if not value:
        raise InvalidInput(f"cannot set {kind} provider: setting {name} is required")
    path = Path(value)
    if not path.is_absolute():
        raise InvalidInput(
            f"cannot set {kind} provider: {name} {value!r} is not an absolute path"
        )
    return path
