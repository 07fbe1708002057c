"""Device certificates issued from a CSR's key by a CA key that Fleetgate holds.

The certificate is X.509 v3 for TLS client authentication: critical
basicConstraints CA:FALSE, critical keyUsage digitalSignature,
extendedKeyUsage clientAuth, and subject and authority key identifiers
(RFC 5280, section 4.2.1). Its subject is ``O=<project>, CN=<certificate
ID>`` as the connection authenticated them; the CSR contributes only its
public key.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from fleetgate.errors import InvalidCsr
from fleetgate.pki import tools

DEFAULT_DAYS = 90
# not_before is set this far in the past, so that a device whose clock
# runs a little behind accepts its certificate at once.
BACKDATE = dt.timedelta(minutes=5)


def device_name(project_id: str, certificate_id: str) -> x509.Name:
    """Return the subject ``O=<project ID>, CN=<certificate ID>``."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, project_id),
            x509.NameAttribute(NameOID.COMMON_NAME, certificate_id),
        ]
    )


def issue_client_certificate(
    csr: x509.CertificateSigningRequest,
    *,
    project_id: str,
    certificate_id: str,
    issuer_key: tools.PrivateKey,
    issuer_cert: x509.Certificate,
    days: int = DEFAULT_DAYS,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Sign a client certificate for the CSR's public key and the given identity.

    The validity ends ``days`` after ``now`` or when the issuer expires,
    whichever is first, because a certificate cannot outlive its chain.
    """
    if not 1 <= days <= tools.MAX_DAYS:
        raise ValueError(f"days must be 1-{tools.MAX_DAYS}, not {days}")
    public_key = csr.public_key()
    if not isinstance(
        public_key,
        ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey,
    ):
        kind = type(public_key).__name__
        raise InvalidCsr(f"cannot issue certificate: unsupported key type {kind}")

    start = (now or dt.datetime.now(dt.UTC)) - BACKDATE
    end = min(
        start + BACKDATE + dt.timedelta(days=days), issuer_cert.not_valid_after_utc
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(device_name(project_id, certificate_id))
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(tools.random_serial())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    builder = tools.add_device_extensions(builder, public_key, issuer_key)
    return builder.sign(issuer_key, tools.signature_hash_for(issuer_key))
