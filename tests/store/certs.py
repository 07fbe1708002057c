"""A throwaway CA kit for store and CLI tests: roots and intermediates."""

from __future__ import annotations

import dataclasses
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID


@dataclasses.dataclass(frozen=True)
class SigningCa:
    """A CA certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        """The certificate, PEM encoded."""
        return self.certificate.public_bytes(Encoding.PEM)

    @property
    def der(self) -> bytes:
        """The certificate, DER encoded."""
        return self.certificate.public_bytes(Encoding.DER)


def make_root(common_name: str = "Test Root", *, days: int = 365) -> SigningCa:
    """Create a self-signed P-256 root CA valid from an hour ago."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return SigningCa(_sign_ca(name, name, key.public_key(), key, days), key)


def make_intermediate(
    issuer: SigningCa, common_name: str = "Test Intermediate", *, days: int = 365
) -> SigningCa:
    """Create a P-256 intermediate CA signed by ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = _sign_ca(
        name, issuer.certificate.subject, key.public_key(), issuer.key, days
    )
    return SigningCa(certificate, key)


def _sign_ca(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    days: int,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                signing_key.public_key()
            ),
            critical=False,
        )
        .sign(signing_key, hashes.SHA256())
    )


def make_crl(
    issuer: SigningCa,
    revoked_serials: tuple[int, ...] = (),
    *,
    next_update: dt.timedelta = dt.timedelta(days=7),
    signing_key: ec.EllipticCurvePrivateKey | None = None,
    number: int = 1,
) -> x509.CertificateRevocationList:
    """Create a CRL of ``issuer`` listing ``revoked_serials``.

    A negative ``next_update`` makes an expired CRL; ``signing_key``
    signs with another key than the issuer's.
    """
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now - dt.timedelta(days=1) + min(next_update, dt.timedelta(0)))
        .next_update(now + next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - dt.timedelta(hours=1))
            .build()
        )
    return builder.sign(signing_key or issuer.key, hashes.SHA256())
