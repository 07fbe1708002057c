"""``fleetgate project``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fleetgate.cli.projects import app

from .conftest import Invoke


def test_create_then_list(invoke: Invoke) -> None:
    created = invoke(app, "create", "acme-sensors", "--name", "Acme", "--require-v3")
    listed = invoke(app, "list")
    assert created.exit_code == 0
    assert created.stdout.strip() == "Created project acme-sensors"
    assert listed.exit_code == 0
    assert "acme-sensors" in listed.stdout
    assert "Acme" in listed.stdout
    assert "yes" in listed.stdout


def test_duplicate_is_one_red_line(invoke: Invoke) -> None:
    invoke(app, "create", "acme")
    result = invoke(app, "create", "acme")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: cannot create project 'acme': the ID is already taken"
    ]
    assert "Traceback" not in result.output


def test_invalid_id_exits_1(invoke: Invoke) -> None:
    result = invoke(app, "create", "Not_A_Slug")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot use project ID 'Not_A_Slug'")


def test_data_dir_option_places_sqlite_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {"FLEETGATE_DATA_DIR": None, "FLEETGATE_DATABASE_URL": None}
    result = CliRunner().invoke(
        app, ["create", "acme", "--data-dir", str(data_dir)], env=env
    )
    assert result.exit_code == 0
    assert (data_dir / "fleetgate.db").exists()


def test_data_dir_from_environment(tmp_path: Path) -> None:
    data_dir = tmp_path / "from-env"
    runner = CliRunner()
    env = {"FLEETGATE_DATA_DIR": str(data_dir), "FLEETGATE_DATABASE_URL": None}
    created = runner.invoke(app, ["create", "acme"], env=env)
    listed = runner.invoke(app, ["list"], env=env)
    assert created.exit_code == 0
    assert (data_dir / "fleetgate.db").exists()
    assert "acme" in listed.stdout


def test_unreachable_database_is_one_line() -> None:
    # Port 1 on loopback has no listener, so the connection is refused.
    result = CliRunner().invoke(
        app, ["list", "--database-url", "postgresql://fleetgate@127.0.0.1:1/none"]
    )
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: cannot migrate the database")


def test_damaged_database_file_is_named(tmp_path: Path) -> None:
    data_dir = tmp_path / "corrupt"
    data_dir.mkdir()
    database_file = data_dir / "fleetgate.db"
    database_file.write_bytes(bytes(range(256)) * 32)
    env = {"FLEETGATE_DATA_DIR": None, "FLEETGATE_DATABASE_URL": None}

    result = CliRunner().invoke(
        app, ["list", "--data-dir", str(data_dir)], env=env, catch_exceptions=False
    )

    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(
        f"error: cannot migrate the database: {database_file} is not a SQLite "
        "database or is damaged"
    )
