"""An offline CA kit: roots, intermediates and device certificates.

The certificates match what the documented openssl recipe makes, so
tests and the ``fleetgate pki`` commands exercise the same shapes that
users upload:

- a root is what ``openssl req -x509 -new`` writes: v3, a critical
  basicConstraints CA:TRUE, subject and authority key identifiers, and no
  keyUsage;
- a device certificate is by default what ``openssl x509 -req -days N
  -sha256`` writes: X.509 v1 with no extensions. The v3 variant adds
  basicConstraints CA:FALSE, keyUsage digitalSignature, extendedKeyUsage
  clientAuth and key identifiers.

Private keys are written unencrypted, with mode 0600 from creation on.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetgate.errors import InvalidInput
from fleetgate.pki import _der
from fleetgate.pki.identity import (
    read_device_name,
    validate_certificate_id,
    validate_project_id,
)

KeyType = Literal["ec-p256", "ec-p384", "rsa2048", "ed25519"]
PrivateKey = _der.SigningKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
KEY_TYPES: tuple[KeyType, ...] = ("ec-p256", "ec-p384", "rsa2048", "ed25519")

DEFAULT_CA_DAYS = 3650
DEFAULT_DEVICE_DAYS = 365
# A hundred years. No CA or device needs longer, and the bound keeps
# end dates far inside Python's datetime, which ends at year 9999.
MAX_DAYS = 36_500
# Largest basicConstraints pathLen of an intermediate. Fleetgate itself
# accepts at most 4 CA certificates above a device, so a larger value
# only matters to other verifiers.
MAX_CA_PATH_LENGTH = 16
# RFC 5280, appendix A.1 bounds a common name (ub-common-name) at 64
# characters, and cryptography raises ValueError for a longer one.
MAX_COMMON_NAME_LENGTH = 64


def generate_key(key_type: KeyType = "ec-p256") -> PrivateKey:
    """Return a new private key of one of the allowed types."""
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(
        f"key_type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}"
    )


def validate_common_name(common_name: str) -> str:
    """Return ``common_name`` if it fits a subject CN, else raise InvalidInput."""
    if not 1 <= len(common_name) <= MAX_COMMON_NAME_LENGTH:
        raise InvalidInput(
            f"cannot use common name {common_name[:70]!r} of {len(common_name)} "
            f"characters: expected 1-{MAX_COMMON_NAME_LENGTH} characters"
        )
    return common_name


def validate_days(days: int) -> int:
    """Return ``days`` if it is a validity period that can be issued, else raise."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(
            f"cannot issue a certificate valid for {days} days: expected "
            f"1-{MAX_DAYS} days"
        )
    return days


def signature_hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """Return the hash that ``key`` signs certificates with; None for Ed25519."""
    # Ed25519 takes no separate hash. P-384 keys sign with SHA-384 so that
    # the hash is as strong as the curve.
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def random_serial() -> int:
    """Return a random positive serial number of at most 159 bits.

    159 bits keep the DER INTEGER within 20 octets (RFC 5280, 4.1.2.2).
    """
    return 1 + secrets.randbelow(2**159 - 1)


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    issuer_public_key: PublicKey,
    *,
    days: int,
    not_before: dt.datetime | None,
) -> x509.CertificateBuilder:
    start = not_before or dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key),
            critical=False,
        )
    )


def make_root(
    common_name: str = "Root CA",
    key_type: KeyType = "ec-p256",
    *,
    days: int = DEFAULT_CA_DAYS,
    not_before: dt.datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """Return a new self-signed root CA key and certificate."""
    validate_common_name(common_name)
    validate_days(days)
    key = generate_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _ca_builder(
        name,
        name,
        key.public_key(),
        key.public_key(),
        days=days,
        not_before=not_before,
    ).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return key, builder.sign(key, signature_hash_for(key))


def make_intermediate(
    issuer_key: PrivateKey,
    issuer_cert: x509.Certificate,
    common_name: str = "Intermediate CA",
    key_type: KeyType = "ec-p256",
    *,
    days: int = DEFAULT_CA_DAYS,
    path_length: int | None = None,
    not_before: dt.datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """Return a new intermediate CA key and certificate signed by the issuer."""
    validate_common_name(common_name)
    validate_days(days)
    if path_length is not None and not 0 <= path_length <= MAX_CA_PATH_LENGTH:
        raise InvalidInput(
            f"cannot use path length {path_length}: expected "
            f"0-{MAX_CA_PATH_LENGTH}, or none for no limit"
        )
    key = generate_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
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
    builder = (
        _ca_builder(
            name,
            issuer_cert.subject,
            key.public_key(),
            issuer_key.public_key(),
            days=days,
            not_before=not_before,
        )
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=path_length), critical=True
        )
        .add_extension(usage, critical=True)
    )
    return key, builder.sign(issuer_key, signature_hash_for(issuer_key))


def make_device_key(key_type: KeyType = "ec-p256") -> PrivateKey:
    """Return a new device private key."""
    return generate_key(key_type)


def make_device_csr(
    key: PrivateKey, project_id: str, certificate_id: str
) -> x509.CertificateSigningRequest:
    """Return a CSR whose subject is O=<project ID>, CN=<certificate ID>."""
    validate_project_id(project_id)
    validate_certificate_id(certificate_id)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, project_id),
            x509.NameAttribute(NameOID.COMMON_NAME, certificate_id),
        ]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    return builder.sign(key, signature_hash_for(key))


def sign_device_csr(
    csr: x509.CertificateSigningRequest,
    issuer_key: PrivateKey,
    issuer_cert: x509.Certificate,
    *,
    days: int = DEFAULT_DEVICE_DAYS,
    version: Literal["v1", "v3"] = "v1",
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """Issue a device certificate for a CSR, keeping the CSR's subject."""
    if not csr.is_signature_valid:
        raise InvalidInput("cannot sign CSR: its self-signature does not verify")
    read_device_name(csr.subject)
    validate_days(days)
    if version not in ("v1", "v3"):
        raise ValueError(f"version must be 'v1' or 'v3', not {version!r}")

    start = not_before or dt.datetime.now(dt.UTC)
    public_key = csr.public_key()
    if not isinstance(
        public_key,
        ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey,
    ):
        raise InvalidInput(
            f"cannot sign CSR: unsupported public key type {type(public_key).__name__}"
        )
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
    )
    if version == "v1":
        v3 = builder.sign(issuer_key, signature_hash_for(issuer_key))
        return _der.to_version_1(v3, issuer_key)
    return add_device_extensions(builder, public_key, issuer_key).sign(
        issuer_key, signature_hash_for(issuer_key)
    )


def add_device_extensions(
    builder: x509.CertificateBuilder,
    public_key: PublicKey,
    issuer_key: PrivateKey,
) -> x509.CertificateBuilder:
    """Add the extensions of a v3 TLS client certificate (RFC 5280, 4.2.1)."""
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        .add_extension(usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )


def _write_new(path: Path, content: bytes, mode: int, *, overwrite: bool) -> None:
    if overwrite:
        path.unlink(missing_ok=True)
    # With O_EXCL the file is created with ``mode`` or not at all, so a key
    # is never readable by others, even briefly, and an existing file or
    # symlink is never followed.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(content)


def write_private_key(path: Path, key: PrivateKey, *, overwrite: bool = False) -> None:
    """Write an unencrypted PKCS#8 PEM key to a new file with mode 0600."""
    content = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_new(path, content, 0o600, overwrite=overwrite)


def write_certificate(
    path: Path, cert: x509.Certificate, *, overwrite: bool = False
) -> None:
    """Write a PEM certificate to a new file with mode 0644."""
    content = cert.public_bytes(serialization.Encoding.PEM)
    _write_new(path, content, 0o644, overwrite=overwrite)


def write_csr(
    path: Path, csr: x509.CertificateSigningRequest, *, overwrite: bool = False
) -> None:
    """Write a PEM certificate signing request to a new file with mode 0644."""
    content = csr.public_bytes(serialization.Encoding.PEM)
    _write_new(path, content, 0o644, overwrite=overwrite)
