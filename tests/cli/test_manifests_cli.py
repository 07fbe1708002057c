"""``fleetgate manifest``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from fleetgate import provisioning
from fleetgate.cli.main import app
from fleetgate.cli.projects import app as projects_app
from fleetgate.store import connections
from fleetgate.store.database import Database

from .conftest import Invoke


@pytest.fixture(autouse=True)
def project(invoke: Invoke) -> None:
    assert invoke(projects_app, "create", "acme").exit_code == 0


def test_import_list_report_delete(invoke: Invoke, tmp_path: Path) -> None:
    manifest = tmp_path / "line-1.csv"
    manifest.write_text("certificate_id,serial\nsn-1,0001\nsn-2,0002\n")

    imported = invoke(
        app, "manifest", "import", str(manifest), "--batch", "l1", "-p", "acme"
    )
    listed = invoke(app, "manifest", "list", "-p", "acme")
    report = invoke(app, "manifest", "report", "-p", "acme")
    deleted = invoke(app, "manifest", "delete", "l1", "-p", "acme")

    assert imported.exit_code == 0, imported.output
    assert "Imported 2 entries" in imported.stdout
    assert "l1" in listed.stdout
    assert "listed, never seen" in report.stdout
    assert "0 not listed, 2 never seen, 0 possible clones" in report.stdout
    assert "Deleted batch l1 with 2 entries" in deleted.stdout


def test_import_bad_rows_fails_with_lines(invoke: Invoke, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.csv"
    manifest.write_text("certificate_id\nsn-1\nsn 2\n")

    result = invoke(
        app, "manifest", "import", str(manifest), "--batch", "l1", "-p", "acme"
    )

    assert result.exit_code == 1
    assert "line 3:" in result.output
    assert "nothing was imported" in result.output


def test_require_on(invoke: Invoke) -> None:
    result = invoke(app, "manifest", "require", "on", "-p", "acme")

    assert result.exit_code == 0
    assert "is on" in result.stdout


def test_report_names_batch_of_clone(
    invoke: Invoke, database: Database, tmp_path: Path
) -> None:
    manifest = tmp_path / "line-7.csv"
    manifest.write_text("certificate_id\nsn-7\n")
    invoke(app, "manifest", "import", str(manifest), "--batch", "line-7", "-p", "acme")
    now = dt.datetime.now(dt.UTC)
    device = provisioning.associate(
        database,
        project_id="acme",
        certificate_id="sn-7",
        fingerprint="ab" * 32,
        not_after=now + dt.timedelta(days=1),
    )
    connections.write_events(
        database,
        [
            connections.NewConnectionEvent(
                project_id="acme",
                peer="127.0.0.1:4000",
                other_peer="127.0.0.2:5000",
                result=connections.ConnectionResult.CLONE_SUSPECTED,
                created_at=now,
                certificate_id="sn-7",
                device_id=device.device_id,
            )
        ],
    )

    report = invoke(app, "manifest", "report", "-p", "acme")

    clone_rows = [
        line for line in report.stdout.splitlines() if "possible clone" in line
    ]
    assert "line-7" in clone_rows[0]
    assert "0 not listed, 0 never seen, 1 possible clone" in report.stdout
