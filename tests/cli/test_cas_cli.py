"""``fleetgate ca``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from fleetgate.cli.cas import app
from fleetgate.cli.projects import app as projects_app
from store.certs import SigningCa, make_intermediate, make_root

from .conftest import Invoke


@pytest.fixture
def root() -> SigningCa:
    return make_root("Acme Root")


@pytest.fixture
def root_file(tmp_path: Path, root: SigningCa) -> Path:
    path = tmp_path / "root.pem"
    path.write_bytes(root.pem)
    return path


@pytest.fixture(autouse=True)
def project(invoke: Invoke) -> None:
    assert invoke(projects_app, "create", "acme").exit_code == 0


def sha256(ca: SigningCa) -> str:
    return ca.certificate.fingerprint(hashes.SHA256()).hex()


def uploaded_id(output: str) -> str:
    match = re.search(r"CA certificate ([0-9a-f]{24})", output)
    assert match is not None, output
    return match.group(1)


def test_upload_detects_root(invoke: Invoke, root_file: Path, root: SigningCa) -> None:
    result = invoke(app, "upload", "--project", "acme", str(root_file))
    assert result.exit_code == 0
    assert result.stdout.startswith("Added root CA certificate ")
    assert "CN=Acme Root" in result.stdout
    assert len(result.stdout.splitlines()) == 1
    assert sha256(root) in result.stdout


def test_upload_detects_intermediate_der(
    invoke: Invoke, tmp_path: Path, root: SigningCa
) -> None:
    path = tmp_path / "issuing.der"
    path.write_bytes(make_intermediate(root).der)
    result = invoke(app, "upload", "-p", "acme", str(path))
    assert result.exit_code == 0
    assert result.stdout.startswith("Added intermediate CA certificate ")


def test_upload_wrong_type_exits_1(invoke: Invoke, root_file: Path) -> None:
    result = invoke(
        app, "upload", "-p", "acme", "--type", "intermediate", str(root_file)
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.splitlines()) == 1


def test_upload_duplicate_names_fingerprint(
    invoke: Invoke, root_file: Path, root: SigningCa
) -> None:
    invoke(app, "upload", "-p", "acme", str(root_file))
    result = invoke(app, "upload", "-p", "acme", str(root_file))
    assert result.exit_code == 1
    assert sha256(root) in result.stderr


def test_upload_garbage_exits_1(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "garbage.pem"
    path.write_bytes(b"hello")
    result = invoke(app, "upload", "-p", "acme", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot load certificate")


def test_upload_of_huge_file_is_rejected(invoke: Invoke, tmp_path: Path) -> None:
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"A" * (200 * 1024))

    result = invoke(app, "upload", "-p", "acme", str(huge))

    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: cannot read CA certificate '{huge}': it is larger than 65536 bytes"
    )


def test_upload_missing_file_is_usage_error(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke(app, "upload", "-p", "acme", str(tmp_path / "absent.pem"))
    assert result.exit_code == 2


def test_upload_to_unknown_project_exits_1(invoke: Invoke, root_file: Path) -> None:
    result = invoke(app, "upload", "-p", "nobody", str(root_file))
    assert result.exit_code == 1
    assert result.stderr == "error: cannot find project 'nobody'\n"


def test_list_shows_table(invoke: Invoke, root_file: Path, root: SigningCa) -> None:
    ca_id = uploaded_id(invoke(app, "upload", "-p", "acme", str(root_file)).stdout)
    result = invoke(app, "list", "-p", "acme")
    fingerprint = sha256(root)
    assert result.exit_code == 0
    assert ca_id in result.stdout
    assert "CN=Acme Root" in result.stdout
    assert fingerprint[:16] + "…" in result.stdout
    assert fingerprint not in result.stdout
    assert "upload" in result.stdout


def test_disable_enable_delete(invoke: Invoke, root_file: Path) -> None:
    ca_id = uploaded_id(invoke(app, "upload", "-p", "acme", str(root_file)).stdout)

    disabled = invoke(app, "disable", "-p", "acme", ca_id)
    listed_disabled = invoke(app, "list", "-p", "acme")
    enabled = invoke(app, "enable", "-p", "acme", ca_id)
    deleted = invoke(app, "delete", "-p", "acme", ca_id)
    listed_after = invoke(app, "list", "-p", "acme")

    assert disabled.exit_code == 0
    assert re.search(r"\bno\b", listed_disabled.stdout)
    assert enabled.exit_code == 0
    assert deleted.stdout.strip() == f"Deleted CA certificate {ca_id}"
    assert ca_id not in listed_after.stdout


@pytest.mark.parametrize("command", ["disable", "enable", "delete"])
def test_unknown_ca_exits_1(invoke: Invoke, command: str) -> None:
    result = invoke(app, command, "-p", "acme", "0" * 24)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot find CA certificate")
