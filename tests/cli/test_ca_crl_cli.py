"""``fleetgate ca crl``: load a CRL for a registered CA certificate."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from fleetgate.cli.cas import app
from fleetgate.cli.projects import app as projects_app
from store.certs import SigningCa, make_crl, make_root

from .conftest import Invoke


@pytest.fixture
def root() -> SigningCa:
    return make_root("Acme Root")


@pytest.fixture
def ca_id(invoke: Invoke, tmp_path: Path, root: SigningCa) -> str:
    assert invoke(projects_app, "create", "acme").exit_code == 0
    path = tmp_path / "root.pem"
    path.write_bytes(root.pem)
    result = invoke(app, "upload", "--project", "acme", str(path))
    match = re.search(r"CA certificate ([0-9a-f]{24})", result.stdout)
    assert match is not None, result.stdout
    return match.group(1)


def test_crl_loaded(
    invoke: Invoke, tmp_path: Path, root: SigningCa, ca_id: str
) -> None:
    path = tmp_path / "root.crl"
    path.write_bytes(make_crl(root, (1, 2)).public_bytes(Encoding.PEM))

    result = invoke(app, "crl", "--project", "acme", ca_id, str(path))

    assert result.exit_code == 0
    assert result.stdout.startswith(f"Loaded CRL for CA certificate {ca_id}: 2 ")
    assert "warning" not in result.stderr


def test_expired_crl_loaded_with_warning(
    invoke: Invoke, tmp_path: Path, root: SigningCa, ca_id: str
) -> None:
    path = tmp_path / "root.crl"
    expired = make_crl(root, (1,), next_update=-dt.timedelta(days=1))
    path.write_bytes(expired.public_bytes(Encoding.DER))

    result = invoke(app, "crl", "--project", "acme", ca_id, str(path))

    assert result.exit_code == 0
    assert "next update has passed" in result.stderr


def test_crl_of_other_ca_rejected(invoke: Invoke, tmp_path: Path, ca_id: str) -> None:
    path = tmp_path / "other.crl"
    path.write_bytes(make_crl(make_root("Other")).public_bytes(Encoding.DER))

    result = invoke(app, "crl", "--project", "acme", ca_id, str(path))

    assert result.exit_code == 1
    assert "cannot load CRL" in result.stderr
