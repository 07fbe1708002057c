"""CA certificates registered in a project, and the trust they give.

Every enabled CA certificate of a project, root or intermediate, is a
trust anchor for that project's devices and for no other project. A CA
is stored as DER and identified by the SHA-256 fingerprint of that DER,
so one certificate can be registered in several projects, but only once
in each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import and_, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetgate.errors import (
    Conflict,
    InvalidCertificate,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Reason,
)
from fleetgate.pki.identity import fingerprint, load_certificates
from fleetgate.pki.rules import is_self_signed
from fleetgate.pki.verify import (
    Anchor,
    ProjectTrust,
    VerificationPolicy,
    check_ca_certificate,
)
from fleetgate.store import audit, revocation
from fleetgate.store.database import Database, PreparedRead
from fleetgate.store.models import CaCertificate, Project, RevocationList
from fleetgate.store.projects import require_project

CertType = Literal["root", "intermediate"]
CERT_TYPES: tuple[CertType, ...] = get_args(CertType)

# Width of the subject and issuer columns, in characters.
MAX_NAME_LENGTH = 1024
# Largest PEM or DER input accepted for one CA certificate, checked before
# parsing. Certificates with RSA-4096 keys and long names take a few KiB.
MAX_FILE_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class CaCertificateRecord:
    """A CA certificate as registered in one project."""

    id: str
    project_id: str
    cert_type: CertType
    subject: str
    issuer: str
    fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    enabled: bool
    source: str
    created_at: dt.datetime
    der: bytes = dataclasses.field(repr=False)

    @classmethod
    def from_row(cls, row: CaCertificate) -> CaCertificateRecord:
        """Copy a CA certificate row into a record that outlives its session."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            cert_type=_as_cert_type(row.cert_type),
            subject=row.subject,
            issuer=row.issuer,
            fingerprint=row.fingerprint,
            not_before=row.not_before,
            not_after=row.not_after,
            enabled=row.enabled,
            source=row.source,
            created_at=row.created_at,
            der=row.der,
        )

    def certificate(self) -> x509.Certificate:
        """Parse the stored DER."""
        return x509.load_der_x509_certificate(self.der)


def detect_cert_type(certificate: x509.Certificate) -> CertType:
    """Return ``root`` for a self-signed certificate, else ``intermediate``."""
    return "root" if is_self_signed(certificate) else "intermediate"


def add_ca_certificate(
    db: Database,
    project_id: str,
    encoded: bytes,
    *,
    cert_type: CertType | None = None,
    source: str = "upload",
    now: dt.datetime | None = None,
    actor: str | None = None,
) -> CaCertificateRecord:
    """Check one PEM or DER CA certificate and register it in a project.

    Without ``cert_type`` a self-signed certificate is a root and any
    other an intermediate. Raises InvalidCertificate when the file does
    not hold exactly one usable CA certificate, NotFound for an unknown
    project and Conflict when the project already has this certificate.
    With ``actor`` the registration is audited. Input over
    ``MAX_FILE_BYTES`` raises PayloadTooLarge.
    """
    if len(encoded) > MAX_FILE_BYTES:
        raise PayloadTooLarge(
            f"cannot add CA certificate: the file has {len(encoded)} bytes and "
            f"the maximum is {MAX_FILE_BYTES}; upload one PEM or DER certificate"
        )
    certificates = load_certificates(encoded)
    if len(certificates) != 1:
        raise InvalidCertificate(
            f"cannot add CA certificate: the file contains {len(certificates)} "
            "certificates, so upload them one at a time"
        )
    certificate = certificates[0]
    if cert_type is None:
        cert_type = detect_cert_type(certificate)
    elif cert_type not in CERT_TYPES:
        raise InvalidInput(
            f"cannot add CA certificate: invalid type {cert_type!r}, "
            f"expected one of {', '.join(CERT_TYPES)}"
        )
    check_ca_certificate(certificate, cert_type=cert_type, now=now)
    digest = fingerprint(certificate)
    subject = _checked_name("subject", certificate.subject, digest)
    issuer = _checked_name("issuer", certificate.issuer, digest)

    row = CaCertificate(
        project_id=project_id,
        der=certificate.public_bytes(Encoding.DER),
        subject=subject,
        issuer=issuer,
        fingerprint=digest,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        cert_type=cert_type,
        enabled=True,
        source=source,
    )
    duplicate = Conflict(
        f"cannot add CA certificate to project {project_id!r}: "
        f"fingerprint {digest} is already registered",
        reason=Reason.CA_ALREADY_REGISTERED,
    )
    try:
        with db.session() as session:
            require_project(session, project_id)
            taken = session.scalar(
                select(CaCertificate.id).where(
                    CaCertificate.project_id == project_id,
                    CaCertificate.fingerprint == digest,
                )
            )
            if taken is not None:
                raise duplicate
            session.add(row)
            session.flush()
            if actor is not None:
                _audit(session, actor, "ca.create", row)
    except IntegrityError as exc:
        # Another process registered the same certificate in between.
        raise duplicate from exc
    return CaCertificateRecord.from_row(row)


def list_ca_certificates(db: Database, project_id: str) -> list[CaCertificateRecord]:
    """Return a project's CA certificates, oldest first."""
    with db.session(read_only=True) as session:
        require_project(session, project_id)
        rows = session.scalars(
            select(CaCertificate)
            .where(CaCertificate.project_id == project_id)
            .order_by(CaCertificate.created_at, CaCertificate.id)
        )
        return [CaCertificateRecord.from_row(row) for row in rows]


def get_ca_certificate(
    db: Database, project_id: str, ca_id: str
) -> CaCertificateRecord:
    """Return one CA certificate of a project, or raise NotFound."""
    with db.session(read_only=True) as session:
        return CaCertificateRecord.from_row(_require_ca(session, project_id, ca_id))


def set_ca_certificate_enabled(
    db: Database,
    project_id: str,
    ca_id: str,
    enabled: bool,
    *,
    actor: str | None = None,
) -> CaCertificateRecord:
    """Enable or disable a CA certificate as a trust anchor."""
    with db.session() as session:
        row = _require_ca(session, project_id, ca_id)
        changed = row.enabled != enabled
        row.enabled = enabled
        if actor is not None and changed:
            _audit(session, actor, "ca.enable" if enabled else "ca.disable", row)
        return CaCertificateRecord.from_row(row)


def delete_ca_certificate(
    db: Database, project_id: str, ca_id: str, *, actor: str | None = None
) -> None:
    """Remove a CA certificate from a project, or raise NotFound."""
    with db.session() as session:
        row = _require_ca(session, project_id, ca_id)
        session.delete(row)
        if actor is not None:
            _audit(session, actor, "ca.delete", row)


def trust_for(db: Database, project_id: str) -> ProjectTrust | None:
    """Load the anchors, CRL entries and policy that verify a project's devices.

    Returns None for an unknown project, so the caller can tell "no such
    project" apart from "a project with no enabled CA".
    """
    with db.session(read_only=True) as session:
        project = session.get(Project, project_id)
        if project is None:
            return None
        rows = session.scalars(
            select(CaCertificate)
            .where(
                CaCertificate.project_id == project_id,
                CaCertificate.enabled.is_(True),
            )
            .order_by(CaCertificate.created_at, CaCertificate.id)
        ).all()
        require_v3 = project.require_v3
        revoked = revocation.revoked_serials(session, project_id)

    anchors = tuple(
        Anchor(
            certificate=x509.load_der_x509_certificate(row.der),
            fingerprint=row.fingerprint,
            ca_id=row.id,
        )
        for row in rows
    )
    policy = VerificationPolicy(require_v3=require_v3)
    return ProjectTrust(anchors=anchors, policy=policy, revoked=revoked)


# A hashable summary of what trust_for reads. It changes with the enabled
# CA certificates, their CRLs and the project's policy, and when a CRL's
# nextUpdate passes, so that trust_for logs the expiry.
TrustVersion = tuple[tuple[object, ...], ...]


def trust_version(db: Database, project_id: str) -> TrustVersion:
    """Read the summary of a project's trust; ``()`` for an unknown project.

    One prepared query on a DB-API cursor, with no certificate parsing.
    For a project with three CAs on SQLite it took 40 µs, where
    :func:`trust_for` took 1 to 2 ms (2 shared vCPUs).
    """
    rows = _TRUST_VERSION_QUERY.fetch_all(db, project_id=project_id)
    now = dt.datetime.now(dt.UTC)
    return tuple((*row[:4], row[4] is not None and now > row[4]) for row in rows)


_TRUST_VERSION_QUERY = PreparedRead(
    select(
        Project.require_v3,
        CaCertificate.id,
        CaCertificate.fingerprint,
        RevocationList.fingerprint,
        RevocationList.next_update,
    )
    .select_from(Project)
    .outerjoin(
        CaCertificate,
        and_(CaCertificate.project_id == Project.id, CaCertificate.enabled.is_(True)),
    )
    .outerjoin(RevocationList, RevocationList.ca_certificate_id == CaCertificate.id)
    .where(Project.id == bindparam("project_id"))
    .order_by(CaCertificate.id, RevocationList.fingerprint)
)


def _require_ca(session: Session, project_id: str, ca_id: str) -> CaCertificate:
    row = session.scalar(
        select(CaCertificate).where(
            CaCertificate.id == ca_id, CaCertificate.project_id == project_id
        )
    )
    if row is None:
        raise NotFound(
            f"cannot find CA certificate {ca_id!r} in project {project_id!r}"
        )
    return row


def _audit(session: Session, actor: str, action: str, row: CaCertificate) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        project_id=row.project_id,
        target_type="certificate",
        target_id=row.id,
        details={
            "certType": row.cert_type,
            "subject": row.subject,
            "fingerprint": row.fingerprint,
        },
    )


def _checked_name(field: str, name: x509.Name, digest: str) -> str:
    text = name.rfc4514_string()
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidCertificate(
            f"cannot add CA certificate {digest}: its {field} has "
            f"{len(text)} characters, the maximum is {MAX_NAME_LENGTH}"
        )
    return text


def _as_cert_type(value: str) -> CertType:
    if value == "root":
        return "root"
    if value == "intermediate":
        return "intermediate"
    raise ValueError(f"cannot read CA certificate type {value!r} from the database")
