"""The provider commands and ``device certificates``, run in-process.

They live beside the moto fixtures that the aws-pca cases need.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from typer.testing import CliRunner, Result

from fleetgate.cli.main import app
from fleetgate.pki import tools
from fleetgate.pki.csr import DeviceIdentity
from fleetgate.rotation import rotate
from fleetgate.store import certificates, pki_providers
from fleetgate.store.database import Database
from fleetgate.store.devices import create_device
from fleetgate.store.projects import create_project

from .conftest import REGION, make_root_ca

Invoke = Callable[..., Result]

PROJECT = "acme"


@pytest.fixture
def invoke(database_url: str) -> Invoke:
    """Return a function that runs ``fleetgate`` on the test database."""
    runner = CliRunner()

    def run(command: Any, *args: str) -> Result:
        return runner.invoke(
            command, [*args, "--database-url", database_url], catch_exceptions=False
        )

    return run


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, PROJECT)
    return database


def test_set_local_generate_registers_ca(
    db: Database, invoke: Invoke, tmp_path: Path
) -> None:
    result = invoke(
        app,
        "provider",
        "set",
        "--project",
        PROJECT,
        "local",
        "--generate",
        "--max-rotations-per-hour",
        "4",
        "--data-dir",
        str(tmp_path),
    )

    assert result.exit_code == 0, result.output
    assert "1 added" in result.output
    config = pki_providers.get_provider_config(db, PROJECT)
    assert config.kind == "local"
    assert config.max_rotations_per_hour == 4
    key_path = Path(config.settings["ca_key"])
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert [c.source for c in certificates.list_ca_certificates(db, PROJECT)] == [
        "local"
    ]


def test_set_local_needs_files(db: Database, invoke: Invoke) -> None:
    result = invoke(app, "provider", "set", "--project", PROJECT, "local")
    assert result.exit_code == 1
    assert "--ca-key and --ca-cert" in result.output


@pytest.mark.parametrize(
    "option",
    [
        pytest.param(["--days", "3000000"], id="fail/days"),
        pytest.param(
            ["--max-rotations-per-hour", "99999999999999999999999"],
            id="fail/rotations",
        ),
    ],
)
def test_set_rejects_numbers_beyond_max(
    db: Database, invoke: Invoke, tmp_path: Path, option: list[str]
) -> None:
    result = invoke(
        app,
        "provider",
        "set",
        "--project",
        PROJECT,
        "local",
        "--generate",
        *option,
        "--data-dir",
        str(tmp_path),
    )

    assert result.exit_code == 2, result.output
    assert option[0] in result.output
    assert pki_providers.get_provider_config(db, PROJECT).kind == "offline"


def test_set_aws_stores_key_file_not_secret(
    db: Database, invoke: Invoke, tmp_path: Path, pca: Any, moto_url: str
) -> None:
    ca = make_root_ca(pca)
    result = invoke(
        app,
        "provider",
        "set",
        "--project",
        PROJECT,
        "aws-pca",
        "--region",
        REGION,
        "--ca-arn",
        ca.arn,
        "--endpoint-url",
        moto_url,
        "--access-key-id",
        "AKIDEXAMPLE",
        "--secret-access-key",
        "s3cr3t-value",
        "--data-dir",
        str(tmp_path),
    )

    assert result.exit_code == 0, result.output
    assert "s3cr3t-value" not in result.output
    config = pki_providers.get_provider_config(db, PROJECT)
    assert "s3cr3t-value" not in json.dumps(config.settings)
    key_file = Path(config.settings["credentials_file"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert config.status == "connected"
    assert config.ca_count == 1

    status = invoke(app, "provider", "status", "--project", PROJECT)
    assert status.exit_code == 0, status.output
    assert "connected" in status.output
    assert "s3cr3t-value" not in status.output


def test_sync_reports_disabled_ca(
    db: Database, invoke: Invoke, pca: Any, moto_url: str
) -> None:
    ca = make_root_ca(pca)
    invoke(
        app,
        "provider",
        "set",
        "--project",
        PROJECT,
        "aws-pca",
        "--region",
        REGION,
        "--ca-arn",
        ca.arn,
        "--endpoint-url",
        moto_url,
    )
    pca.update_certificate_authority(CertificateAuthorityArn=ca.arn, Status="DISABLED")

    result = invoke(app, "provider", "sync", "--project", PROJECT)

    assert result.exit_code == 0, result.output
    assert "1 disabled" in result.output


def test_status_of_unreachable_aws_fails(
    db: Database, invoke: Invoke, aws_env: None
) -> None:
    arn = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/x"
    pki_providers.set_provider_config(
        db,
        PROJECT,
        "aws-pca",
        {"region": REGION, "ca_arn": arn, "endpoint_url": "http://127.0.0.1:1"},
        status="configured",
    )

    result = invoke(app, "provider", "status", "--project", PROJECT)

    assert result.exit_code == 1
    assert "cannot" in result.output


def test_offline_status(db: Database, invoke: Invoke) -> None:
    result = invoke(app, "provider", "status", "--project", PROJECT)
    assert result.exit_code == 0, result.output
    assert "offline" in result.output


def test_device_certificates_lists_rotations(
    db: Database, invoke: Invoke, tmp_path: Path
) -> None:
    invoke(
        app,
        "provider",
        "set",
        "--project",
        PROJECT,
        "local",
        "--generate",
        "--data-dir",
        str(tmp_path),
    )
    device = create_device(db, PROJECT, "dev-1", certificate_id="dev-1")
    csr = tools.make_device_csr(tools.make_device_key(), PROJECT, "dev-1")
    rotation = rotate(
        db,
        DeviceIdentity(PROJECT, "dev-1", device.id),
        csr.public_bytes(Encoding.DER),
    )

    result = invoke(app, "device", "certificates", "--project", PROJECT, device.id)

    assert result.exit_code == 0, result.output
    assert rotation.record.serial in result.output
    assert "local" in result.output
    assert "1 certificate(s)" in result.output
