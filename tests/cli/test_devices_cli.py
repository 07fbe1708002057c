"""``fleetgate device``."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetgate.cli import main
from fleetgate.cli.devices import app
from fleetgate.cli.projects import app as projects_app
from fleetgate.store.database import Database
from fleetgate.store.devices import get_device

from .conftest import Invoke


@pytest.fixture(autouse=True)
def project(invoke: Invoke) -> None:
    assert invoke(projects_app, "create", "acme").exit_code == 0


def created_id(output: str) -> str:
    match = re.search(r"Created device ([0-9a-f]{24})", output)
    assert match is not None, output
    return match.group(1)


def test_create_then_list(invoke: Invoke) -> None:
    created = invoke(app, "create", "-p", "acme", "pump-1")
    bound = invoke(app, "create", "-p", "acme", "pump-2", "--certificate-id", "sn-2")
    listed = invoke(app, "list", "-p", "acme")
    assert created.exit_code == 0
    assert bound.exit_code == 0
    assert created_id(created.stdout) in listed.stdout
    assert "pump-1" in listed.stdout
    assert "sn-2" in listed.stdout
    assert "1-2 of 2" in listed.stdout


def test_list_filters_by_name(invoke: Invoke) -> None:
    invoke(app, "create", "-p", "acme", "pump-1")
    invoke(app, "create", "-p", "acme", "valve-1")
    listed = invoke(app, "list", "-p", "acme", "--name", "PUMP")
    assert "pump-1" in listed.stdout
    assert "valve-1" not in listed.stdout
    assert "1-1 of 1" in listed.stdout


def test_list_pages(invoke: Invoke) -> None:
    for index in range(3):
        invoke(app, "create", "-p", "acme", f"dev-{index}")
    listed = invoke(app, "list", "-p", "acme", "--page", "1", "--per-page", "2")
    assert "dev-2" in listed.stdout
    assert "dev-0" not in listed.stdout
    assert "3-3 of 3" in listed.stdout


def test_piped_list_keeps_long_values_whole(invoke: Invoke) -> None:
    name = "n" * 200
    certificate_id = "c" * 128
    invoke(app, "create", "-p", "acme", name, "--certificate-id", certificate_id)

    listed = invoke(app, "list", "-p", "acme")

    assert listed.exit_code == 0, listed.output
    assert certificate_id in listed.stdout
    assert name in listed.stdout
    assert "…" not in listed.stdout


def test_list_rejects_page_beyond_max(invoke: Invoke) -> None:
    listed = invoke(app, "list", "-p", "acme", "--page", "9223372036854775807")
    assert listed.exit_code == 2
    assert "--page" in listed.output


def test_list_shows_last_seen_and_expiry(invoke: Invoke, database_url: str) -> None:
    from fleetgate.provisioning import associate
    from fleetgate.store.database import Database

    db = Database.open(database_url)
    try:
        associate(
            db,
            project_id="acme",
            certificate_id="sn-9",
            fingerprint="ab" * 32,
            not_after=dt.datetime(2030, 5, 6, 7, 8, tzinfo=dt.UTC),
            now=dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC),
        )
    finally:
        db.dispose()
    listed = invoke(app, "list", "-p", "acme")
    assert "2026-01-02 03:04" in listed.stdout
    assert "2030-05-06 07:08" in listed.stdout


def test_duplicate_name_exits_1(invoke: Invoke) -> None:
    invoke(app, "create", "-p", "acme", "pump-1")
    result = invoke(app, "create", "-p", "acme", "pump-1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot create device 'pump-1'")
    assert len(result.stderr.splitlines()) == 1


def test_disable_and_enable(invoke: Invoke) -> None:
    device_id = created_id(invoke(app, "create", "-p", "acme", "pump-1").stdout)
    disabled = invoke(app, "disable", "-p", "acme", device_id)
    listed = invoke(app, "list", "-p", "acme")
    enabled = invoke(app, "enable", "-p", "acme", device_id)
    assert disabled.stdout.strip() == f"Disabled device {device_id}"
    assert re.search(r"\bno\b", listed.stdout)
    assert enabled.stdout.strip() == f"Enabled device {device_id}"


def test_disable_and_enable_by_name(invoke: Invoke) -> None:
    device_id = created_id(invoke(app, "create", "-p", "acme", "pump-1").stdout)

    disabled = invoke(app, "disable", "-p", "acme", "pump-1")
    listed = invoke(app, "list", "-p", "acme")
    enabled = invoke(app, "enable", "-p", "acme", "pump-1")

    assert disabled.stdout.strip() == f"Disabled device {device_id}"
    assert re.search(r"\bno\b", listed.stdout)
    assert enabled.stdout.strip() == f"Enabled device {device_id}"


def test_id_wins_over_other_name(invoke: Invoke, database_url: str) -> None:
    first_id = created_id(invoke(app, "create", "-p", "acme", "pump-1").stdout)
    # A second device whose name is the first device's ID.
    second = invoke(app, "create", "-p", "acme", first_id)
    second_id = created_id(second.stdout)

    disabled = invoke(app, "disable", "-p", "acme", first_id)

    assert disabled.stdout.strip() == f"Disabled device {first_id}"
    db = Database.open(database_url)
    try:
        assert not get_device(db, "acme", first_id).enabled
        assert get_device(db, "acme", second_id).enabled
    finally:
        db.dispose()


def test_device_of_other_project_exits_1(invoke: Invoke) -> None:
    invoke(projects_app, "create", "other")
    device_id = created_id(invoke(app, "create", "-p", "acme", "pump-1").stdout)
    result = invoke(app, "disable", "-p", "other", device_id)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: cannot find device '{device_id}' in project 'other': "
        "no device has this ID or name\n"
    )


def test_list_unknown_project_exits_1(invoke: Invoke) -> None:
    result = invoke(app, "list", "-p", "nobody")
    assert result.exit_code == 1
    assert result.stderr == "error: cannot find project 'nobody'\n"


@pytest.mark.parametrize(
    "option",
    [
        pytest.param(["--port", "70000"], id="fail/port"),
        pytest.param(["--timeout", "inf"], id="fail/timeout"),
    ],
)
def test_rotate_rejects_option_out_of_range(tmp_path: Path, option: list[str]) -> None:
    placeholder = tmp_path / "file.pem"
    placeholder.write_text("")
    files = ["--cert", "--key", "--server-ca"]
    args = [item for name in files for item in (name, str(placeholder))]

    result = CliRunner().invoke(
        main.app,
        ["device", "rotate", *args, "--host", "127.0.0.1"]
        + ["--out-cert", str(tmp_path / "new.pem"), "--out-key", str(tmp_path / "k")]
        + option,
    )

    assert result.exit_code == 2, result.output
    assert option[0] in result.output
