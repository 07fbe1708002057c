"""The offline CA kit: certificate shapes, serials and file modes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetgate.errors import InvalidInput, Reason
from fleetgate.pki import tools
from fleetgate.pki.identity import load_certificates
from fleetgate.pki.verify import check_ca_certificate

OPENSSL = shutil.which("openssl")


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run the test with umask 000, so only the explicit mode limits access."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def extension_types(cert: x509.Certificate) -> set[type[x509.ExtensionType]]:
    return {type(extension.value) for extension in cert.extensions}


# Keys and serials.


@pytest.mark.parametrize(
    ("key_type", "expected"),
    [
        pytest.param("ec-p256", ec.EllipticCurvePrivateKey, id="ok/ec-p256"),
        pytest.param("ec-p384", ec.EllipticCurvePrivateKey, id="ok/ec-p384"),
        pytest.param("rsa2048", rsa.RSAPrivateKey, id="ok/rsa2048"),
        pytest.param("ed25519", ed25519.Ed25519PrivateKey, id="ok/ed25519"),
    ],
)
def test_generate_key_types(key_type: tools.KeyType, expected: type) -> None:
    key = tools.generate_key(key_type)

    assert isinstance(key, expected)


def test_generate_key_unknown_type() -> None:
    with pytest.raises(ValueError, match="key_type"):
        tools.generate_key("dsa1024")  # type: ignore[arg-type]


def test_random_serial_positive_159_bits() -> None:
    serials = {tools.random_serial() for _ in range(200)}

    assert len(serials) == 200
    assert min(serials) > 0
    assert max(serials) < 2**159


# Roots and intermediates.


def test_root_matches_openssl_req_x509() -> None:
    key, cert = tools.make_root("Lab Root")

    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    subject_key_id = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    authority_key_id = cert.extensions.get_extension_for_class(
        x509.AuthorityKeyIdentifier
    )
    assert cert.version == x509.Version.v3
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=Lab Root"
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length is None
    assert authority_key_id.value.key_identifier == subject_key_id.value.digest
    assert x509.KeyUsage not in extension_types(cert)
    assert cert.signature_hash_algorithm == hashes.SHA256()
    cert.verify_directly_issued_by(cert)
    check_ca_certificate(cert, cert_type="root")


@pytest.mark.parametrize("key_type", tools.KEY_TYPES)
def test_root_each_key_type_registers(key_type: tools.KeyType) -> None:
    key, cert = tools.make_root(key_type=key_type)

    check_ca_certificate(cert, cert_type="root")


def test_root_validity_days() -> None:
    key, cert = tools.make_root(days=10)

    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days == 10


def test_intermediate_shape() -> None:
    root_key, root_cert = tools.make_root()
    key, cert = tools.make_intermediate(root_key, root_cert, "Lab CA", path_length=0)

    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    authority_key_id = cert.extensions.get_extension_for_class(
        x509.AuthorityKeyIdentifier
    )
    root_key_id = root_cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    )
    assert cert.issuer == root_cert.subject
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    assert usage.critical
    assert usage.value.key_cert_sign
    assert authority_key_id.value.key_identifier == root_key_id.value.digest
    cert.verify_directly_issued_by(root_cert)
    check_ca_certificate(cert, cert_type="intermediate")


# Device CSRs and certificates.


def test_device_csr_subject_o_then_cn() -> None:
    csr = tools.make_device_csr(tools.make_device_key(), "acme", "dev:01")

    attributes = [(a.oid, a.value) for a in csr.subject]
    assert attributes == [
        (NameOID.ORGANIZATION_NAME, "acme"),
        (NameOID.COMMON_NAME, "dev:01"),
    ]
    assert csr.is_signature_valid


@pytest.mark.parametrize(
    ("project_id", "certificate_id", "reason"),
    [
        pytest.param("Acme", "dev-1", Reason.INVALID_INPUT, id="fail/bad-project"),
        pytest.param(
            "acme", "dev 1", Reason.INVALID_CERTIFICATE_ID, id="fail/bad-certificate-id"
        ),
    ],
)
def test_device_csr_invalid_ids(
    project_id: str, certificate_id: str, reason: Reason
) -> None:
    with pytest.raises(InvalidInput) as caught:
        tools.make_device_csr(tools.make_device_key(), project_id, certificate_id)

    assert caught.value.reason == reason


def test_device_certificate_v1_by_default() -> None:
    root_key, root_cert = tools.make_root()
    csr = tools.make_device_csr(tools.make_device_key(), "acme", "dev-1")

    cert = tools.sign_device_csr(csr, root_key, root_cert, days=7)

    assert cert.version == x509.Version.v1
    assert len(cert.extensions) == 0
    assert cert.subject == csr.subject
    assert cert.issuer == root_cert.subject
    assert cert.public_key() == csr.public_key()
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 7
    assert 0 < cert.serial_number < 2**159
    cert.verify_directly_issued_by(root_cert)


def test_device_certificate_v3_extensions() -> None:
    root_key, root_cert = tools.make_root()
    csr = tools.make_device_csr(tools.make_device_key(), "acme", "dev-1")

    cert = tools.sign_device_csr(csr, root_key, root_cert, version="v3")

    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert cert.version == x509.Version.v3
    assert not constraints.value.ca
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert list(extended.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert x509.SubjectKeyIdentifier in extension_types(cert)
    assert x509.AuthorityKeyIdentifier in extension_types(cert)
    cert.verify_directly_issued_by(root_cert)


@pytest.mark.parametrize("key_type", tools.KEY_TYPES)
def test_device_certificate_v1_each_issuer_key(key_type: tools.KeyType) -> None:
    root_key, root_cert = tools.make_root(key_type=key_type)
    csr = tools.make_device_csr(tools.make_device_key(key_type), "acme", "dev-1")

    cert = tools.sign_device_csr(csr, root_key, root_cert)

    assert cert.version == x509.Version.v1
    cert.verify_directly_issued_by(root_cert)


def test_sign_rejects_tampered_csr() -> None:
    root_key, root_cert = tools.make_root()
    csr = tools.make_device_csr(tools.make_device_key(), "acme", "dev-1")
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    tampered = x509.load_der_x509_csr(bytes(der))

    with pytest.raises(InvalidInput, match="self-signature"):
        tools.sign_device_csr(tampered, root_key, root_cert)


def test_sign_rejects_csr_without_device_subject() -> None:
    root_key, root_cert = tools.make_root()
    key = tools.make_device_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev-1")])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .sign(key, hashes.SHA256())
    )

    with pytest.raises(InvalidInput) as caught:
        tools.sign_device_csr(csr, root_key, root_cert)

    assert caught.value.reason == Reason.BAD_SUBJECT


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
def test_openssl_verifies_kit_chain(tmp_path: Path) -> None:
    root_key, root_cert = tools.make_root()
    ca_key, ca_cert = tools.make_intermediate(root_key, root_cert)
    csr = tools.make_device_csr(tools.make_device_key(), "acme", "dev-1")
    leaf = tools.sign_device_csr(csr, ca_key, ca_cert)
    for file_name, cert in (("root", root_cert), ("ca", ca_cert), ("dev", leaf)):
        tools.write_certificate(tmp_path / f"{file_name}.pem", cert)

    assert OPENSSL is not None
    result = subprocess.run(
        [OPENSSL, "verify", "-CAfile", "root.pem", "-untrusted", "ca.pem", "dev.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "dev.pem: OK"


# Files.


def test_private_key_mode_0600(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "root.key.pem"

    tools.write_private_key(path, tools.generate_key())

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_private_key_round_trip(tmp_path: Path) -> None:
    key = tools.generate_key()
    path = tmp_path / "root.key.pem"

    tools.write_private_key(path, key)

    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert loaded.public_key() == key.public_key()


def test_private_key_refuses_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "root.key.pem"
    path.write_bytes(b"keep me")

    with pytest.raises(FileExistsError):
        tools.write_private_key(path, tools.generate_key())

    assert path.read_bytes() == b"keep me"


def test_private_key_refuses_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "root.key.pem"
    link.symlink_to(target)

    with pytest.raises(FileExistsError):
        tools.write_private_key(link, tools.generate_key())

    assert not target.exists()


def test_private_key_overwrite_resets_mode(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "root.key.pem"
    path.write_bytes(b"old")
    path.chmod(0o666)

    tools.write_private_key(path, tools.generate_key(), overwrite=True)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_certificate_file_round_trip(tmp_path: Path, open_umask: None) -> None:
    key, cert = tools.make_root()
    path = tmp_path / "root.crt.pem"

    tools.write_certificate(path, cert)

    assert load_certificates(path.read_bytes()) == [cert]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_csr_file_round_trip(tmp_path: Path) -> None:
    csr = tools.make_device_csr(tools.make_device_key(), "acme", "dev-1")
    path = tmp_path / "dev-1.csr.pem"

    tools.write_csr(path, csr)

    assert x509.load_pem_x509_csr(path.read_bytes()) == csr


# Input bounds.


@pytest.mark.parametrize(
    "days",
    [pytest.param(0, id="fail/zero"), pytest.param(tools.MAX_DAYS + 1, id="fail/max")],
)
def test_make_root_rejects_days_out_of_range(days: int) -> None:
    with pytest.raises(InvalidInput, match="days"):
        tools.make_root(days=days)


def test_make_root_accepts_max_days() -> None:
    _, cert = tools.make_root(days=tools.MAX_DAYS)

    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert validity.days == tools.MAX_DAYS


def test_sign_device_csr_rejects_huge_days() -> None:
    issuer_key, issuer_cert = tools.make_root()
    csr = tools.make_device_csr(tools.make_device_key(), "acme", "dev-1")

    with pytest.raises(InvalidInput, match="3000000 days"):
        tools.sign_device_csr(csr, issuer_key, issuer_cert, days=3_000_000)


@pytest.mark.parametrize(
    "common_name",
    [pytest.param("", id="fail/empty"), pytest.param("x" * 65, id="fail/65-chars")],
)
def test_make_root_rejects_common_name_length(common_name: str) -> None:
    with pytest.raises(InvalidInput, match="expected 1-64 characters"):
        tools.make_root(common_name)


def test_make_intermediate_rejects_huge_path_length() -> None:
    issuer_key, issuer_cert = tools.make_root()

    with pytest.raises(InvalidInput, match="path length"):
        tools.make_intermediate(
            issuer_key, issuer_cert, path_length=tools.MAX_CA_PATH_LENGTH + 1
        )
