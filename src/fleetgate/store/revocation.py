"""Certificate revocation lists (CRLs) loaded for registered CA certificates.

Each registered CA certificate has at most one CRL; loading another
replaces it. A CRL is accepted only when its issuer name is the CA's
subject and its signature verifies with the CA's public key (RFC 5280,
section 6.3.3). The chain verifier then rejects any certificate that
this CA issued and the CRL lists, with reason ``revoked``.

A CRL whose nextUpdate has passed is still loaded and still used: its
entries stay revoked, because dropping them would let revoked devices
back in. Fleetgate logs a warning at load and once per process when
the gateway reads it, so that the operator fetches a fresh one. CRLs
are not fetched from distribution points, and delta CRLs and indirect
CRLs (entries for another issuer) are not supported.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import logging
import threading

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import (
    dsa,
    ec,
    ed448,
    ed25519,
    rsa,
)
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetgate.errors import InvalidInput, NotFound, Reason
from fleetgate.store import audit
from fleetgate.store.database import Database
from fleetgate.store.models import CaCertificate, RevocationList, utcnow

log = logging.getLogger(__name__)

_PEM_BEGIN = b"-----BEGIN X509 CRL-----"
# Parsed CRLs kept in memory, by the SHA-256 of their DER encoding.
MAX_CACHED_CRLS = 1024


@dataclasses.dataclass(frozen=True)
class RevocationListRecord:
    """A CRL as loaded for one CA certificate."""

    id: str
    ca_certificate_id: str
    fingerprint: str
    this_update: dt.datetime
    next_update: dt.datetime | None
    crl_number: str | None
    revoked_count: int
    loaded_at: dt.datetime

    @classmethod
    def from_row(cls, row: RevocationList) -> RevocationListRecord:
        """Copy a CRL row into a record that outlives its session."""
        return cls(
            id=row.id,
            ca_certificate_id=row.ca_certificate_id,
            fingerprint=row.fingerprint,
            this_update=row.this_update,
            next_update=row.next_update,
            crl_number=row.crl_number,
            revoked_count=row.revoked_count,
            loaded_at=row.loaded_at,
        )

    def expired(self, now: dt.datetime) -> bool:
        """Whether nextUpdate has passed, so a newer CRL should exist."""
        return self.next_update is not None and now > self.next_update


def parse_crl(encoded: bytes) -> x509.CertificateRevocationList:
    """Parse one PEM or DER CRL, or raise InvalidInput."""
    if not encoded.strip():
        raise InvalidInput(
            "cannot load CRL: the input is empty", reason=Reason.MALFORMED_CRL
        )
    try:
        if _PEM_BEGIN in encoded:
            return x509.load_pem_x509_crl(encoded)
        return x509.load_der_x509_crl(encoded)
    except ValueError as exc:
        # cryptography's message is its ASN.1 parser's internal error.
        log.debug("CRL parse failed: %s", exc)
        raise InvalidInput(
            "cannot load CRL: the input is not a PEM or DER CRL",
            reason=Reason.MALFORMED_CRL,
        ) from exc


def check_crl_issuer(
    crl: x509.CertificateRevocationList, ca: x509.Certificate, ca_id: str
) -> None:
    """Raise InvalidInput unless ``ca`` issued and signed ``crl``."""
    if crl.issuer != ca.subject:
        raise InvalidInput(
            f"cannot load CRL for CA certificate {ca_id!r}: the CRL's issuer "
            f"{crl.issuer.rfc4514_string()!r} is not the CA's subject "
            f"{ca.subject.rfc4514_string()!r}",
            reason=Reason.CRL_NOT_FROM_CA,
        )
    public_key = ca.public_key()
    if not isinstance(
        public_key,
        dsa.DSAPublicKey
        | rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ) or not crl.is_signature_valid(public_key):
        raise InvalidInput(
            f"cannot load CRL for CA certificate {ca_id!r}: its signature does "
            "not verify with the CA's public key",
            reason=Reason.CRL_NOT_FROM_CA,
        )
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    # RFC 5280, section 4.2.1.3: a CRL signer with keyUsage sets cRLSign.
    if not usage.crl_sign:
        raise InvalidInput(
            f"cannot load CRL for CA certificate {ca_id!r}: the CA's keyUsage "
            "does not include cRLSign",
            reason=Reason.CRL_NOT_FROM_CA,
        )


def load_revocation_list(
    db: Database,
    project_id: str,
    ca_id: str,
    encoded: bytes,
    *,
    now: dt.datetime | None = None,
    actor: str | None = None,
) -> RevocationListRecord:
    """Check a CRL against a registered CA certificate and store it for that CA.

    Raises InvalidInput for a malformed CRL or one that the CA did not
    sign, and NotFound for an unknown project or CA certificate. An
    expired CRL is stored with a warning in the log.
    """
    crl = parse_crl(encoded)
    der = crl.public_bytes(Encoding.DER)
    digest = hashlib.sha256(der).hexdigest()
    number = _crl_number(crl)
    checked_at = now or utcnow()

    with db.session() as session:
        ca_row = _require_ca(session, project_id, ca_id)
        ca = x509.load_der_x509_certificate(ca_row.der)
        check_crl_issuer(crl, ca, ca_id)
        row = session.scalar(
            select(RevocationList).where(RevocationList.ca_certificate_id == ca_id)
        )
        if row is None:
            row = RevocationList(ca_certificate_id=ca_id)
            session.add(row)
        row.der = der
        row.fingerprint = digest
        row.this_update = crl.last_update_utc
        row.next_update = crl.next_update_utc
        row.crl_number = None if number is None else str(number)
        row.revoked_count = len(crl)
        row.loaded_at = checked_at
        session.flush()
        if actor is not None:
            audit.record(
                session,
                actor=actor,
                action="ca.crl",
                project_id=project_id,
                target_type="certificate",
                target_id=ca_id,
                details={"crlFingerprint": digest, "revoked": len(crl)},
            )
        record = RevocationListRecord.from_row(row)

    log.info(
        "CRL loaded project=%s ca_id=%s crl=%s revoked=%d next_update=%s",
        project_id,
        ca_id,
        digest[:16],
        record.revoked_count,
        _isoformat(record.next_update),
    )
    if record.expired(checked_at):
        _warn_expired(project_id, ca_id, record)
    return record


def get_revocation_list(
    db: Database, project_id: str, ca_id: str
) -> RevocationListRecord | None:
    """Return the CRL of a CA certificate, or None when none was loaded."""
    with db.session(read_only=True) as session:
        _require_ca(session, project_id, ca_id)
        row = session.scalar(
            select(RevocationList).where(RevocationList.ca_certificate_id == ca_id)
        )
        return None if row is None else RevocationListRecord.from_row(row)


def revoked_serials(session: Session, project_id: str) -> dict[str, frozenset[int]]:
    """Map each enabled CA certificate of a project that has a CRL to its serials.

    Keys are CA fingerprints. Logs a warning, once per CRL and process,
    for each CRL whose nextUpdate has passed. Its entries stay revoked.
    """
    rows = session.execute(
        select(CaCertificate.fingerprint, RevocationList)
        .join(RevocationList, RevocationList.ca_certificate_id == CaCertificate.id)
        .where(
            CaCertificate.project_id == project_id,
            CaCertificate.enabled.is_(True),
        )
    ).all()

    now = utcnow()
    revoked: dict[str, frozenset[int]] = {}
    for ca_fingerprint, row in rows:
        record = RevocationListRecord.from_row(row)
        revoked[ca_fingerprint] = _serials.get(record.fingerprint, row.der)
        if record.expired(now) and _serials.first_expiry_warning(record.fingerprint):
            _warn_expired(project_id, record.ca_certificate_id, record)
    return revoked


class _SerialCache:
    """Revoked serial numbers of each CRL, parsed once per process."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: collections.OrderedDict[str, frozenset[int]] = (
            collections.OrderedDict()
        )
        self._warned: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str, der: bytes) -> frozenset[int]:
        """Return the serials of the CRL ``der``, whose SHA-256 is ``digest``."""
        with self._lock:
            serials = self._entries.get(digest)
            if serials is not None:
                self._entries.move_to_end(digest)
                return serials
        crl = x509.load_der_x509_crl(der)
        serials = frozenset(entry.serial_number for entry in crl)
        with self._lock:
            self._entries[digest] = serials
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return serials

    def first_expiry_warning(self, digest: str) -> bool:
        """Return True the first time an expired CRL is seen."""
        with self._lock:
            if digest in self._warned:
                return False
            self._warned[digest] = None
            while len(self._warned) > self._size:
                self._warned.popitem(last=False)
            return True


_serials = _SerialCache(MAX_CACHED_CRLS)


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


def _warn_expired(project_id: str, ca_id: str, record: RevocationListRecord) -> None:
    log.warning(
        "CRL expired, its entries are still used project=%s ca_id=%s crl=%s "
        "next_update=%s reason=%s; load a newer CRL with fleetgate ca crl",
        project_id,
        ca_id,
        record.fingerprint[:16],
        _isoformat(record.next_update),
        Reason.CRL_EXPIRED,
    )


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def _isoformat(value: dt.datetime | None) -> str:
    return "-" if value is None else value.isoformat()
