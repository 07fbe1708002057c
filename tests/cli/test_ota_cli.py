"""``fleetgate ota``: artifacts, releases and device firmware status."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from fleetgate.cli.devices import app as devices_app
from fleetgate.cli.ota import app
from fleetgate.cli.projects import app as projects_app
from fleetgate.store import devices, ota_reports
from fleetgate.store.database import Database

from .conftest import Invoke


@pytest.fixture(autouse=True)
def project(invoke: Invoke) -> None:
    assert invoke(projects_app, "create", "acme").exit_code == 0
    assert invoke(devices_app, "create", "-p", "acme", "pump-1").exit_code == 0


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "firmware.bin"
    path.write_bytes(os.urandom(70_000))
    return path


def upload(invoke: Invoke, image: Path, version: str = "1.2.0") -> str:
    result = invoke(
        app,
        "artifact",
        "upload",
        "-p",
        "acme",
        str(image),
        "--package",
        "main",
        "--version",
        version,
    )
    assert result.exit_code == 0, result.output
    match = re.search(r"Uploaded artifact ([0-9a-f]{24})", result.stdout)
    assert match is not None, result.stdout
    return match.group(1)


def test_upload_prints_hash_and_lists(invoke: Invoke, image: Path) -> None:
    artifact_id = upload(invoke, image)
    listed = invoke(app, "artifact", "list", "-p", "acme")
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert artifact_id in listed.stdout
    assert digest[:16] in listed.stdout
    assert "70000" in listed.stdout


def test_release_rollout_shows_in_status(invoke: Invoke, image: Path) -> None:
    upload(invoke, image)
    created = invoke(app, "release", "create", "-p", "acme", "spring", "main@1.2.0")
    rolled = invoke(
        app, "release", "rollout", "-p", "acme", "spring", "--device", "pump-1"
    )
    status = invoke(app, "status", "-p", "acme", "pump-1")
    listed = invoke(app, "release", "list", "-p", "acme")
    assert created.exit_code == 0, created.output
    assert rolled.exit_code == 0, rolled.output
    assert "Desired firmware" in status.stdout
    assert "main@1.2.0" in status.stdout
    assert "spring" in listed.stdout


def test_rollback_empties_desired(invoke: Invoke, image: Path) -> None:
    upload(invoke, image)
    invoke(app, "release", "create", "-p", "acme", "spring", "main@1.2.0")
    invoke(app, "release", "rollout", "-p", "acme", "spring", "--all")
    rolled_back = invoke(app, "release", "rollback", "-p", "acme", "spring")
    status = invoke(app, "status", "-p", "acme", "pump-1")
    assert rolled_back.exit_code == 0, rolled_back.output
    assert "none" in status.stdout


def test_artifact_in_release_is_not_deleted(invoke: Invoke, image: Path) -> None:
    upload(invoke, image)
    invoke(app, "release", "create", "-p", "acme", "spring", "main@1.2.0")
    result = invoke(app, "artifact", "delete", "-p", "acme", "main@1.2.0")
    assert result.exit_code == 1
    assert "releases 'spring' contain it" in result.stderr


def test_status_lists_reports(invoke: Invoke, database_url: str) -> None:
    db = Database.open(database_url)
    try:
        device_id = devices.find_device(db, "acme", "pump-1").id
        ota_reports.add_report(
            db,
            project_id="acme",
            device_id=device_id,
            package="main",
            state=1,
            reason=0,
            current_version="1.0.0",
            target_version="1.2.0",
        )
    finally:
        db.dispose()
    status = invoke(app, "status", "-p", "acme", "pump-1", "--history")
    assert "downloading" in status.stdout
    assert "1.0.0" in status.stdout


def test_unknown_release_is_an_error(invoke: Invoke) -> None:
    result = invoke(app, "release", "rollback", "-p", "acme", "nope")
    assert result.exit_code == 1
    assert "cannot find release 'nope'" in result.stderr
