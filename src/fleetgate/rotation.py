"""Certificate rotation: a device's CSR in, a certificate for the same device out.

The order of work for one CSR from an authenticated connection:

1. check the CSR (:mod:`fleetgate.pki.csr`): DER, self-signature,
   subject, key and signature policy;
2. check the device's rotation count over the last hour against the
   project's limit, stored in the database so that it applies across
   restarts and processes;
3. ask the project's provider to issue a client certificate for the
   CSR's key, with the connection's project and certificate ID;
4. record the certificate in ``issued_certificates``;
5. check that the certificate has the CSR's key and the device's
   subject and verifies against the project's enabled CA certificates.
   A certificate that fails this would lock the device out if it
   replaced its old one, so it is not handed out.

Because the certificate ID stays the same, the association rule maps
the new certificate to the same device record on its next connection.

NOTE: steps 2 and 4 are separate transactions, so requests of one
device that run at once (over several sessions) can each pass step 2.
The overshoot is bounded by the device's concurrent requests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from cryptography import x509

from fleetgate.errors import DeviceRejected, ProviderFailed
from fleetgate.pki.csr import DeviceIdentity, load_device_csr
from fleetgate.pki.identity import device_subject, fingerprint
from fleetgate.pki.verify import ChainVerifier, ProjectTrust
from fleetgate.providers.base import IssuedChain, IssueRequest
from fleetgate.providers.sync import build_provider
from fleetgate.store import certificates, issued_certificates, pki_providers
from fleetgate.store.database import Database
from fleetgate.store.issued_certificates import IssuedCertificateRecord

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Rotation:
    """A certificate issued for a device's CSR, and how it was recorded."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    record: IssuedCertificateRecord


class _StoredAnchors:
    """Reads a project's anchors from the database on every call, uncached."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def anchors_for(self, project_id: str) -> ProjectTrust | None:
        return certificates.trust_for(self._db, project_id)


def rotate(
    db: Database,
    device: DeviceIdentity,
    csr_der: bytes,
    *,
    now: dt.datetime | None = None,
) -> Rotation:
    """Issue a new certificate for a device's CSR through the project's provider.

    Raises InvalidCsr, CsrPolicyViolation or DeviceRejected for a CSR
    that breaks the rules, RateLimited over the hourly limit, and
    NoIssuingProvider, ProviderUnavailable or ProviderFailed from the
    provider.
    """
    csr = load_device_csr(csr_der, device)
    config = pki_providers.get_provider_config(db, device.project_id)
    issued_certificates.check_rotation_allowed(
        db,
        device.project_id,
        device.device_id,
        config.max_rotations_per_hour,
        now=now,
    )

    provider = build_provider(config)
    issued = provider.issue(
        IssueRequest(
            csr=csr,
            project_id=device.project_id,
            certificate_id=device.certificate_id,
            device_id=device.device_id,
        )
    )
    record = issued_certificates.record_issued_certificate(
        db,
        device.project_id,
        device.device_id,
        issued.certificate,
        provider=config.kind,
        now=now,
    )
    _check_issued(db, issued, csr, device, now=now)

    log.info(
        "certificate rotated project=%s device=%s cert_id=%s provider=%s "
        "serial=%s fingerprint=%s not_after=%s",
        device.project_id,
        device.device_id,
        device.certificate_id,
        config.kind,
        record.serial,
        record.fingerprint,
        record.not_after.isoformat(),
    )
    return Rotation(issued.certificate, issued.chain, record)


def _check_issued(
    db: Database,
    issued: IssuedChain,
    csr: x509.CertificateSigningRequest,
    device: DeviceIdentity,
    *,
    now: dt.datetime | None,
) -> None:
    certificate = issued.certificate
    digest = fingerprint(certificate)
    problem = None
    if certificate.public_key() != csr.public_key():
        problem = "its public key is not the CSR's"
    else:
        try:
            subject = device_subject(certificate)
            if (subject.project_id, subject.certificate_id) != (
                device.project_id,
                device.certificate_id,
            ):
                problem = (
                    f"its subject names project {subject.project_id!r} and "
                    f"certificate ID {subject.certificate_id!r}"
                )
            else:
                verifier = ChainVerifier(_StoredAnchors(db))
                verifier.verify(certificate, issued.chain, now=now)
        except DeviceRejected as exc:
            problem = f"a connection with it would be rejected ({exc.message})"
    if problem is None:
        return

    log.error(
        "issued certificate not usable project=%s device=%s cert_id=%s "
        "fingerprint=%s problem=%r",
        device.project_id,
        device.device_id,
        device.certificate_id,
        digest,
        problem,
    )
    raise ProviderFailed(
        f"cannot hand out the certificate the provider issued ({digest}): "
        f"{problem}; check the provider's CA with 'fleetgate provider sync'"
    )
