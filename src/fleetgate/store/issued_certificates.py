"""Device certificates issued through Fleetgate, and the rotation rate limit.

Every certificate a PKI provider issues for a device's CSR is recorded
with its serial number, fingerprint, validity and provider. The same
rows count a device's rotations over the last hour. The count lives in
the database, so the limit applies across restarts and across gateway
processes that share one database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

from cryptography import x509
from sqlalchemy import func, select

from fleetgate.errors import RateLimited
from fleetgate.pki.identity import fingerprint
from fleetgate.store.database import Database
from fleetgate.store.devices import require_device
from fleetgate.store.models import IssuedCertificate, utcnow

# The window over which rotations are counted.
RATE_WINDOW = dt.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class IssuedCertificateRecord:
    """One certificate issued to a device."""

    id: str
    project_id: str
    device_id: str
    serial: str
    fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    provider: str
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: IssuedCertificate) -> IssuedCertificateRecord:
        """Copy an issued certificate row into a record that outlives its session."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            device_id=row.device_id,
            serial=row.serial,
            fingerprint=row.fingerprint,
            not_before=row.not_before,
            not_after=row.not_after,
            provider=row.provider,
            created_at=row.created_at,
        )


def record_issued_certificate(
    db: Database,
    project_id: str,
    device_id: str,
    certificate: x509.Certificate,
    *,
    provider: str,
    now: dt.datetime | None = None,
) -> IssuedCertificateRecord:
    """Record a certificate issued to a device; raises NotFound for no device."""
    row = IssuedCertificate(
        project_id=project_id,
        device_id=device_id,
        serial=format(certificate.serial_number, "x"),
        fingerprint=fingerprint(certificate),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        provider=provider,
        created_at=now or utcnow(),
    )
    with db.session() as session:
        require_device(session, project_id, device_id)
        session.add(row)
    return IssuedCertificateRecord.from_row(row)


def list_issued_certificates(
    db: Database, project_id: str, device_id: str
) -> list[IssuedCertificateRecord]:
    """Return the certificates issued to a device, newest first.

    Raises NotFound for a device that is not in the project.
    """
    with db.session(read_only=True) as session:
        require_device(session, project_id, device_id)
        rows = session.scalars(
            select(IssuedCertificate)
            .where(
                IssuedCertificate.project_id == project_id,
                IssuedCertificate.device_id == device_id,
            )
            .order_by(IssuedCertificate.created_at.desc(), IssuedCertificate.id)
        )
        return [IssuedCertificateRecord.from_row(row) for row in rows]


def check_rotation_allowed(
    db: Database,
    project_id: str,
    device_id: str,
    limit: int,
    *,
    now: dt.datetime | None = None,
) -> None:
    """Raise RateLimited when the device already had ``limit`` issuances this hour.

    ``retry_after`` counts the seconds until enough issuances leave the
    window for one more to fit, which is when the oldest one leaves
    unless the limit was lowered in between.
    """
    current = now or utcnow()
    window = IssuedCertificate.device_id == device_id
    window &= IssuedCertificate.created_at > current - RATE_WINDOW
    with db.session(read_only=True) as session:
        count = session.scalar(select(func.count()).where(window)) or 0
        if count < limit:
            return
        freeing = session.scalar(
            select(IssuedCertificate.created_at)
            .where(window)
            .order_by(IssuedCertificate.created_at)
            .offset(count - limit)
            .limit(1)
        )

    wait = RATE_WINDOW.total_seconds()
    if freeing is not None:
        wait = (freeing + RATE_WINDOW - current).total_seconds()
    retry_after = max(1, math.ceil(wait))
    raise RateLimited(
        f"cannot issue a certificate to device {device_id} of project "
        f"{project_id!r}: {count} certificates were issued in the last hour "
        f"and the limit is {limit}; retry in {retry_after} seconds",
        retry_after=retry_after,
    )
