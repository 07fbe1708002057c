"""``fleetgate pki``: root, intermediate and device files from the CA kit."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner, Result

from fleetgate.cli.pki import app
from fleetgate.pki import tools
from fleetgate.pki.identity import fingerprint, load_certificates
from fleetgate.pki.verify import (
    Anchor,
    ChainVerifier,
    ProjectTrust,
    VerificationPolicy,
)


def pki(*args: str) -> Result:
    """Run ``fleetgate pki`` with ``args`` in-process."""
    return CliRunner().invoke(app, list(args))


def read_cert(path: Path) -> x509.Certificate:
    [cert] = load_certificates(path.read_bytes())
    return cert


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def root_files(tmp_path: Path) -> tuple[Path, Path]:
    """Write a root with the CLI and return its key and certificate paths."""
    result = pki("root", "--out-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    return tmp_path / "root.key.pem", tmp_path / "root.crt.pem"


def device_args(
    issuer: tuple[Path, Path], out_dir: Path, certificate_id: str = "dev-1"
) -> list[str]:
    return [
        "device",
        "--project",
        "acme",
        "--certificate-id",
        certificate_id,
        "--issuer-key",
        str(issuer[0]),
        "--issuer-cert",
        str(issuer[1]),
        "--out-dir",
        str(out_dir),
    ]


class _Source:
    def __init__(self, anchor: x509.Certificate) -> None:
        self.trust = ProjectTrust(
            [Anchor(anchor, fingerprint(anchor))], VerificationPolicy()
        )

    def anchors_for(self, project_id: str) -> ProjectTrust | None:
        return self.trust if project_id == "acme" else None


# root


def test_root_writes_key_and_certificate(root_files: tuple[Path, Path]) -> None:
    key_path, cert_path = root_files

    cert = read_cert(cert_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert mode(key_path) == 0o600
    assert cert.subject.rfc4514_string() == "CN=Root CA"
    assert cert.public_key() == key.public_key()


def test_root_prints_paths(tmp_path: Path) -> None:
    result = pki("root", "--out-dir", str(tmp_path), "--name", "lab")

    assert result.exit_code == 0
    assert str(tmp_path / "lab.key.pem") in result.output
    assert str(tmp_path / "lab.crt.pem") in result.output


def test_root_options(tmp_path: Path) -> None:
    result = pki(
        "root",
        "--out-dir",
        str(tmp_path),
        "--common-name",
        "Lab Root",
        "--key-type",
        "ed25519",
        "--days",
        "30",
    )

    cert = read_cert(tmp_path / "root.crt.pem")
    assert result.exit_code == 0, result.output
    assert cert.subject.rfc4514_string() == "CN=Lab Root"
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30


def test_root_creates_out_dir(tmp_path: Path) -> None:
    out_dir = tmp_path / "a" / "b"

    result = pki("root", "--out-dir", str(out_dir))

    assert result.exit_code == 0, result.output
    assert (out_dir / "root.crt.pem").exists()


def test_root_refuses_overwrite(root_files: tuple[Path, Path]) -> None:
    key_path, cert_path = root_files
    before = key_path.read_bytes()

    result = pki("root", "--out-dir", str(key_path.parent))

    assert result.exit_code == 1
    assert "the file exists; pass --force to overwrite it" in result.output
    assert isinstance(result.exception, SystemExit)
    assert key_path.read_bytes() == before


def test_root_force_overwrites(root_files: tuple[Path, Path]) -> None:
    key_path, cert_path = root_files
    before = cert_path.read_bytes()

    result = pki("root", "--out-dir", str(key_path.parent), "--force")

    assert result.exit_code == 0, result.output
    assert cert_path.read_bytes() != before
    assert mode(key_path) == 0o600


def test_root_rejects_zero_days(tmp_path: Path) -> None:
    result = pki("root", "--out-dir", str(tmp_path), "--days", "0")

    assert result.exit_code == 2
    assert not (tmp_path / "root.key.pem").exists()


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["root"], id="fail/root"),
        pytest.param(["intermediate"], id="fail/intermediate"),
        pytest.param(["device", "--project", "acme"], id="fail/device"),
    ],
)
def test_days_beyond_max_is_usage_error(
    command: list[str], root_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    issuer = ["--issuer-key", str(root_files[0]), "--issuer-cert", str(root_files[1])]
    if command[0] == "root":
        issuer = []
    if command[0] == "device":
        issuer += ["--certificate-id", "dev-1"]

    result = pki(*command, *issuer, "--out-dir", str(out_dir), "--days", "3000000")

    assert result.exit_code == 2, result.output
    assert "--days" in result.output
    assert not out_dir.exists()


@pytest.mark.parametrize(
    "common_name",
    [pytest.param("", id="fail/empty"), pytest.param("x" * 65, id="fail/65-chars")],
)
@pytest.mark.parametrize("command", ["root", "intermediate"])
def test_common_name_length_is_checked(
    command: str, common_name: str, root_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    issuer = ["--issuer-key", str(root_files[0]), "--issuer-cert", str(root_files[1])]
    args = [command, *(issuer if command == "intermediate" else [])]

    result = pki(*args, "--out-dir", str(out_dir), "--common-name", common_name)

    assert result.exit_code == 1, result.output
    assert "expected 1-64 characters" in result.output
    assert isinstance(result.exception, SystemExit)
    assert not out_dir.exists()


def test_common_name_of_64_chars_is_accepted(tmp_path: Path) -> None:
    result = pki("root", "--out-dir", str(tmp_path), "--common-name", "x" * 64)

    assert result.exit_code == 0, result.output
    subject = read_cert(tmp_path / "root.crt.pem").subject
    assert subject.rfc4514_string() == "CN=" + "x" * 64


@pytest.mark.parametrize(
    "stem",
    [pytest.param("", id="fail/empty"), pytest.param("a/b", id="fail/slash")],
)
def test_root_rejects_bad_name_stem(stem: str, tmp_path: Path) -> None:
    result = pki("root", "--out-dir", str(tmp_path / "out"), "--name", stem)

    assert result.exit_code == 1, result.output
    assert f"cannot use --name {stem!r}" in result.output
    assert not (tmp_path / "out").exists()


def test_intermediate_path_length_beyond_max(
    root_files: tuple[Path, Path], tmp_path: Path
) -> None:
    issuer = ["--issuer-key", str(root_files[0]), "--issuer-cert", str(root_files[1])]

    result = pki(
        "intermediate",
        *issuer,
        "--out-dir",
        str(tmp_path / "out"),
        "--path-length",
        "99999999999999999999",
    )

    assert result.exit_code == 2, result.output
    assert "--path-length" in result.output


# intermediate


def test_intermediate_signed_by_root(
    root_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out_dir = tmp_path / "ca"

    result = pki(
        "intermediate",
        "--issuer-key",
        str(root_files[0]),
        "--issuer-cert",
        str(root_files[1]),
        "--out-dir",
        str(out_dir),
        "--path-length",
        "0",
    )

    cert = read_cert(out_dir / "intermediate.crt.pem")
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert result.exit_code == 0, result.output
    assert mode(out_dir / "intermediate.key.pem") == 0o600
    assert constraints.value.path_length == 0
    cert.verify_directly_issued_by(read_cert(root_files[1]))


# device


def test_device_v1_by_default(root_files: tuple[Path, Path], tmp_path: Path) -> None:
    out_dir = tmp_path / "devices"

    result = pki(*device_args(root_files, out_dir, "AA:BB:CC:00:11:22"))

    cert = read_cert(out_dir / "AA:BB:CC:00:11:22.crt.pem")
    csr = x509.load_pem_x509_csr((out_dir / "AA:BB:CC:00:11:22.csr.pem").read_bytes())
    assert result.exit_code == 0, result.output
    assert mode(out_dir / "AA:BB:CC:00:11:22.key.pem") == 0o600
    assert cert.version == x509.Version.v1
    assert cert.subject == csr.subject
    assert cert.subject.rfc4514_string() == "CN=AA:BB:CC:00:11:22,O=acme"


def test_device_takes_short_project_option(
    root_files: tuple[Path, Path], tmp_path: Path
) -> None:
    args = device_args(root_files, tmp_path)
    args[1] = "-p"

    result = pki(*args)

    assert result.exit_code == 0, result.output
    subject = read_cert(tmp_path / "dev-1.crt.pem").subject
    assert subject.rfc4514_string() == "CN=dev-1,O=acme"


def test_device_v3_flag(root_files: tuple[Path, Path], tmp_path: Path) -> None:
    result = pki(*device_args(root_files, tmp_path), "--v3", "--days", "7")

    cert = read_cert(tmp_path / "dev-1.crt.pem")
    assert result.exit_code == 0, result.output
    assert cert.version == x509.Version.v3
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 7


def test_device_chain_verifies(root_files: tuple[Path, Path], tmp_path: Path) -> None:
    pki(*device_args(root_files, tmp_path))
    root = read_cert(root_files[1])

    device = ChainVerifier(_Source(root)).verify(read_cert(tmp_path / "dev-1.crt.pem"))

    assert device.project_id == "acme"
    assert device.certificate_id == "dev-1"


def test_device_from_intermediate_verifies(
    root_files: tuple[Path, Path], tmp_path: Path
) -> None:
    ca_dir = tmp_path / "ca"
    pki(
        "intermediate",
        "--issuer-key",
        str(root_files[0]),
        "--issuer-cert",
        str(root_files[1]),
        "--out-dir",
        str(ca_dir),
    )
    issuer = (ca_dir / "intermediate.key.pem", ca_dir / "intermediate.crt.pem")

    result = pki(*device_args(issuer, tmp_path))

    leaf = read_cert(tmp_path / "dev-1.crt.pem")
    intermediate = read_cert(issuer[1])
    source = _Source(read_cert(root_files[1]))
    assert result.exit_code == 0, result.output
    assert ChainVerifier(source).verify(leaf, [intermediate]).certificate_id == "dev-1"


@pytest.mark.parametrize(
    ("project", "certificate_id", "expected"),
    [
        pytest.param(
            "Acme", "dev-1", "cannot use project ID 'Acme'", id="fail/project"
        ),
        pytest.param(
            "acme", "dev 1", "cannot use certificate ID 'dev 1'", id="fail/cert-id"
        ),
        pytest.param(
            "acme", "../dev", "cannot use certificate ID '../dev'", id="fail/path"
        ),
    ],
)
def test_device_invalid_ids(
    project: str,
    certificate_id: str,
    expected: str,
    root_files: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    out_dir = tmp_path / "out"
    args = device_args(root_files, out_dir, certificate_id)
    args[2] = project

    result = pki(*args)

    assert result.exit_code == 1
    assert expected in result.output
    assert isinstance(result.exception, SystemExit)
    assert not out_dir.exists()


def test_device_missing_issuer_key(
    root_files: tuple[Path, Path], tmp_path: Path
) -> None:
    issuer = (tmp_path / "missing.key.pem", root_files[1])

    result = pki(*device_args(issuer, tmp_path))

    assert result.exit_code == 1
    assert "cannot read issuer key" in result.output
    assert "No such file or directory" in result.output


def test_device_issuer_cert_garbage(
    root_files: tuple[Path, Path], tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate")

    result = pki(*device_args((root_files[0], garbage), tmp_path))

    assert result.exit_code == 1
    assert "cannot load certificate" in result.output
    assert str(garbage) in result.output


def test_device_issuer_key_mismatch(
    root_files: tuple[Path, Path], tmp_path: Path
) -> None:
    other_key = tmp_path / "other.key.pem"
    tools.write_private_key(other_key, tools.generate_key())

    result = pki(*device_args((other_key, root_files[1]), tmp_path))

    assert result.exit_code == 1
    assert "does not match the public key" in result.output


def test_device_issuer_key_encrypted(
    root_files: tuple[Path, Path], tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(root_files[0].read_bytes(), None)
    encrypted = tmp_path / "encrypted.key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )

    result = pki(*device_args((encrypted, root_files[1]), tmp_path))

    assert result.exit_code == 1
    assert "it is encrypted" in result.output


def test_device_issuer_not_a_ca(root_files: tuple[Path, Path], tmp_path: Path) -> None:
    pki(*device_args(root_files, tmp_path))
    leaf_issuer = (tmp_path / "dev-1.key.pem", tmp_path / "dev-1.crt.pem")

    result = pki(*device_args(leaf_issuer, tmp_path / "out", "dev-2"))

    assert result.exit_code == 1
    assert "'CN=dev-1,O=acme' is not a CA certificate" in result.output


def test_device_refuses_partial_overwrite(
    root_files: tuple[Path, Path], tmp_path: Path
) -> None:
    (tmp_path / "dev-1.crt.pem").write_bytes(b"existing")

    result = pki(*device_args(root_files, tmp_path))

    assert result.exit_code == 1
    assert "dev-1.crt.pem: the file exists" in result.output
    assert not (tmp_path / "dev-1.key.pem").exists()
    assert not (tmp_path / "dev-1.csr.pem").exists()


def test_device_force_overwrites(root_files: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "dev-1.crt.pem").write_bytes(b"existing")

    result = pki(*device_args(root_files, tmp_path), "--force")

    assert result.exit_code == 0, result.output
    assert read_cert(tmp_path / "dev-1.crt.pem").version == x509.Version.v1
