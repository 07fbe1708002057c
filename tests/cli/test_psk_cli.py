"""``fleetgate psk``: add, list and delete PSK credentials."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from fleetgate.cli.devices import app as devices_app
from fleetgate.cli.projects import app as projects_app
from fleetgate.cli.psk import app

from .conftest import Invoke


@pytest.fixture(autouse=True)
def device(invoke: Invoke) -> None:
    assert invoke(projects_app, "create", "acme").exit_code == 0
    assert invoke(devices_app, "create", "--project", "acme", "sensor-1").exit_code == 0


def created_id(stderr: str) -> str:
    match = re.search(r"Created PSK credential ([0-9a-f]{24})", stderr)
    assert match is not None, stderr
    return match.group(1)


def test_add_prints_key_once(invoke: Invoke, tmp_path: Path) -> None:
    key = bytes(range(40, 72)).hex()
    added = invoke(
        app,
        "add",
        "-p",
        "acme",
        "sensor-1",
        "--identity",
        "s1@acme",
        "--key",
        key,
        "--data-dir",
        str(tmp_path),
    )
    listed = invoke(app, "list", "-p", "acme", "sensor-1", "--data-dir", str(tmp_path))

    assert added.exit_code == 0
    assert added.stdout.strip() == key
    assert listed.exit_code == 0
    assert "s1@acme" in listed.stdout
    assert key not in listed.stdout


def test_add_creates_private_key_file(invoke: Invoke, tmp_path: Path) -> None:
    added = invoke(app, "add", "-p", "acme", "sensor-1", "--data-dir", str(tmp_path))

    kek_file = tmp_path / "psk-key-encryption.key"
    assert added.exit_code == 0
    assert stat.S_IMODE(kek_file.stat().st_mode) == 0o600
    assert "As text" in added.stderr
    assert len(bytes.fromhex(added.stdout.strip())) == 32


def test_short_key_is_rejected(invoke: Invoke, tmp_path: Path) -> None:
    added = invoke(
        app,
        "add",
        "-p",
        "acme",
        "sensor-1",
        "--key",
        "0011",
        "--data-dir",
        str(tmp_path),
    )
    assert added.exit_code == 1
    assert "2 bytes" in added.stderr
    assert "16 to 64 bytes" in added.stderr


def test_delete_removes_credential(invoke: Invoke, tmp_path: Path) -> None:
    added = invoke(app, "add", "-p", "acme", "sensor-1", "--data-dir", str(tmp_path))
    credential_id = created_id(added.stderr)

    deleted = invoke(app, "delete", "-p", "acme", credential_id)
    listed = invoke(app, "list", "-p", "acme", "sensor-1")

    assert deleted.exit_code == 0
    assert credential_id in deleted.stdout
    assert credential_id not in listed.stdout


def test_unknown_device_is_an_error(invoke: Invoke, tmp_path: Path) -> None:
    added = invoke(app, "add", "-p", "acme", "ghost", "--data-dir", str(tmp_path))
    assert added.exit_code == 1
    assert "cannot find device 'ghost'" in added.stderr


def test_odd_length_key_is_rejected(invoke: Invoke, tmp_path: Path) -> None:
    added = invoke(
        app,
        "add",
        "-p",
        "acme",
        "sensor-1",
        "--key",
        bytes(range(40, 58)).hex()[:-1],
        "--data-dir",
        str(tmp_path),
    )
    assert added.exit_code == 1
    assert "odd number of hex digits (35)" in added.stderr
    assert "not hexadecimal" not in added.stderr
