"""``fleetgate manifest``."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetgate.cli.main import app
from fleetgate.cli.projects import app as projects_app

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
