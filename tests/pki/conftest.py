"""A fixture PKI for the pki tests: CAs from the CA kit, odd leaves by hand.

Standard roots, intermediates and device certificates come from
:mod:`fleetgate.pki.tools`. Certificates that no CA should issue (two
CNs, SHA-1, a zero serial, an unknown critical extension) are built here
with pyca/cryptography, or edited at the DER level and signed again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from fleetgate.pki import _der, tools
from fleetgate.pki.identity import fingerprint
from fleetgate.pki.verify import Anchor, ProjectTrust, VerificationPolicy

PROJECT = "acme-sensors"
OTHER_PROJECT = "other-project"
CERTIFICATE_ID = "dev-0001"

# AlgorithmIdentifier encodings that pyca/cryptography refuses to sign with.
ECDSA_WITH_SHA1 = bytes.fromhex("300906072a8648ce3d0401")
RSA_WITH_MD5 = bytes.fromhex("300d06092a864886f70d0101040500")
RSA_WITH_SHA1 = bytes.fromhex("300d06092a864886f70d0101050500")

AnyPrivateKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | dsa.DSAPrivateKey
)


@dataclass(frozen=True)
class Ca:
    """A CA certificate and the key that signs with it."""

    key: tools.PrivateKey
    cert: x509.Certificate


def name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    """Return a Name with one RDN per attribute, in the given order."""
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def device_name(
    project_id: str = PROJECT, certificate_id: str = CERTIFICATE_ID
) -> x509.Name:
    """Return the subject O=<project ID>, CN=<certificate ID>."""
    return name(
        (NameOID.ORGANIZATION_NAME, project_id),
        (NameOID.COMMON_NAME, certificate_id),
    )


def utcnow() -> dt.datetime:
    """Return the current time in UTC, truncated to whole seconds."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def issue(
    issuer: Ca,
    subject: x509.Name | None = None,
    *,
    key: AnyPrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    v1: bool = False,
) -> x509.Certificate:
    """Issue a certificate with any subject, key, validity and extensions.

    Each extension is an (extension, critical) pair. ``v1`` strips the
    version field, as ``openssl x509 -req`` does without extensions.
    """
    return _build(
        issuer.key,
        issuer.cert.subject,
        subject or device_name(),
        (key or ec.generate_private_key(ec.SECP256R1())).public_key(),
        not_before=not_before,
        not_after=not_after,
        extensions=extensions,
        v1=v1,
    )


def _build(
    signing_key: tools.PrivateKey,
    issuer_name: x509.Name,
    subject: x509.Name,
    public_key: x509.CertificatePublicKeyTypes,
    *,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
    v1: bool = False,
) -> x509.Certificate:
    start = not_before or utcnow() - dt.timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(tools.random_serial())
        .not_valid_before(start)
        .not_valid_after(not_after or start + dt.timedelta(days=30))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    hash_algorithm = (
        None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    )
    cert = builder.sign(signing_key, hash_algorithm)
    if v1:
        return _der.to_version_1(cert, signing_key)
    return cert


def ca_extensions(
    *, path_length: int | None = None, key_cert_sign: bool = True
) -> list[tuple[x509.ExtensionType, bool]]:
    """Return basicConstraints CA:TRUE and a keyUsage, both critical."""
    return [
        (x509.BasicConstraints(ca=True, path_length=path_length), True),
        (key_usage(key_cert_sign=key_cert_sign, digital_signature=True), True),
    ]


def key_usage(*, key_cert_sign: bool, digital_signature: bool) -> x509.KeyUsage:
    """Return a keyUsage with only the two named bits under control."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    issuer: Ca | None,
    common_name: str,
    *,
    key: tools.PrivateKey | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Ca:
    """Return a CA signed by ``issuer``, or self-signed when it is None."""
    ca_key = key or ec.generate_private_key(ec.SECP256R1())
    subject = name((NameOID.COMMON_NAME, common_name))
    cert = _build(
        issuer.key if issuer else ca_key,
        issuer.cert.subject if issuer else subject,
        subject,
        ca_key.public_key(),
        not_before=not_before,
        not_after=not_after,
        extensions=ca_extensions() if extensions is None else extensions,
    )
    return Ca(ca_key, cert)


def with_serial(cert: x509.Certificate, serial: int, issuer: Ca) -> x509.Certificate:
    """Return ``cert`` with another serial number, signed again by ``issuer``."""
    elements = _der.split(cert.tbs_certificate_bytes)
    index = 1 if elements[0][0] == _der.VERSION_TAG else 0
    elements[index] = _der.encode_integer(serial)
    return _der.resign(cert, elements, issuer.key)


def with_signature_algorithm(
    cert: x509.Certificate,
    algorithm: bytes,
    hash_algorithm: hashes.HashAlgorithm,
    issuer: Ca,
) -> x509.Certificate:
    """Return ``cert`` signed again with a hash that builders refuse (SHA-1, MD5)."""
    elements = _der.split(cert.tbs_certificate_bytes)
    index = 2 if elements[0][0] == _der.VERSION_TAG else 1
    elements[index] = algorithm
    return _der.sign_tbs(elements, algorithm, issuer.key, hash_algorithm)


def with_broken_signature(cert: x509.Certificate) -> x509.Certificate:
    """Return ``cert`` with the last byte of its signature flipped."""
    der = bytearray(cert.public_bytes(Encoding.DER))
    der[-1] ^= 0x01
    return x509.load_der_x509_certificate(bytes(der))


@dataclass
class StaticSource:
    """An AnchorSource backed by a dictionary, editable between calls."""

    projects: dict[str, ProjectTrust] = field(default_factory=dict)
    calls: int = 0

    def register(
        self,
        project_id: str,
        anchors: Sequence[x509.Certificate],
        policy: VerificationPolicy | None = None,
    ) -> None:
        """Make ``anchors`` the enabled CA certificates of ``project_id``."""
        self.projects[project_id] = ProjectTrust(
            anchors=[Anchor(cert, fingerprint(cert)) for cert in anchors],
            policy=policy or VerificationPolicy(),
        )

    def anchors_for(self, project_id: str) -> ProjectTrust | None:
        """Return the registered trust, or None for an unknown project."""
        self.calls += 1
        return self.projects.get(project_id)


@dataclass(frozen=True)
class FixturePki:
    """A root, an intermediate under it, and a second project's root."""

    root: Ca
    intermediate: Ca
    other_root: Ca


@pytest.fixture(scope="session")
def pki() -> FixturePki:
    """The shared CAs; tests that need odd CAs make their own."""
    root_key, root_cert = tools.make_root("Root CA")
    root = Ca(root_key, root_cert)
    intermediate_key, intermediate_cert = tools.make_intermediate(
        root_key, root_cert, "Intermediate CA"
    )
    other_key, other_cert = tools.make_root("Other Root CA")
    return FixturePki(
        root=root,
        intermediate=Ca(intermediate_key, intermediate_cert),
        other_root=Ca(other_key, other_cert),
    )
