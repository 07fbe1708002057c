"""Which commands may create the data folder, and what the others report."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetgate.cli.main import app

# Without these, a developer's own settings would pick the database.
CLEAN_ENV: dict[str, str | None] = {
    "FLEETGATE_DATA_DIR": None,
    "FLEETGATE_DATABASE_URL": None,
}


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["project", "list"], id="fail/project-list"),
        pytest.param(["ca", "list", "-p", "acme"], id="fail/ca-list"),
        pytest.param(["device", "list", "-p", "acme"], id="fail/device-list"),
        pytest.param(
            ["device", "certificates", "-p", "acme", "d1"],
            id="fail/device-certificates",
        ),
        pytest.param(["apikey", "list", "--admin"], id="fail/apikey-list"),
        pytest.param(["provider", "status", "-p", "acme"], id="fail/provider-status"),
    ],
)
def test_read_command_rejects_missing_data_dir(
    tmp_path: Path, command: list[str]
) -> None:
    data_dir = tmp_path / "typo"

    result = CliRunner().invoke(
        app, [*command, "--data-dir", str(data_dir)], env=CLEAN_ENV
    )

    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(
        f"error: cannot open the database: {data_dir / 'fleetgate.db'} does not exist"
    )
    assert "--data-dir" in result.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["psk", "add", "-p", "acme", "d1"], id="fail/psk-add"),
        pytest.param(["device", "create", "-p", "acme", "d1"], id="fail/device-create"),
        pytest.param(
            ["device", "disable", "-p", "acme", "d1"], id="fail/device-disable"
        ),
        pytest.param(["apikey", "revoke", "--admin", "k1"], id="fail/apikey-revoke"),
    ],
)
def test_write_command_creates_nothing_in_missing_data_dir(
    tmp_path: Path, command: list[str]
) -> None:
    data_dir = tmp_path / "new"

    result = CliRunner().invoke(
        app, [*command, "--data-dir", str(data_dir)], env=CLEAN_ENV
    )

    assert result.exit_code == 1, result.output
    assert "cannot open the database" in result.stderr
    assert not data_dir.exists()


def test_psk_add_leaves_no_key_file_for_unknown_project(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(
        app, ["project", "create", "acme", "--data-dir", str(tmp_path)], env=CLEAN_ENV
    )

    result = runner.invoke(
        app,
        ["psk", "add", "-p", "other", "d1", "--data-dir", str(tmp_path)],
        env=CLEAN_ENV,
    )

    assert result.exit_code == 1, result.output
    assert not (tmp_path / "psk-key-encryption.key").exists()


def test_read_command_rejects_folder_without_database(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["project", "list", "--data-dir", str(tmp_path)], env=CLEAN_ENV
    )

    assert result.exit_code == 1, result.output
    assert not (tmp_path / "fleetgate.db").exists()


def test_project_create_creates_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "new"
    runner = CliRunner()

    created = runner.invoke(
        app, ["project", "create", "acme", "--data-dir", str(data_dir)], env=CLEAN_ENV
    )
    listed = runner.invoke(
        app, ["project", "list", "--data-dir", str(data_dir)], env=CLEAN_ENV
    )

    assert created.exit_code == 0, created.output
    assert listed.exit_code == 0, listed.output
    assert "acme" in listed.stdout


def test_database_url_needs_no_data_dir(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"

    result = CliRunner().invoke(
        app,
        ["project", "list", "--database-url", url, "--data-dir", str(tmp_path / "x")],
        env=CLEAN_ENV,
    )

    assert result.exit_code == 0, result.output
