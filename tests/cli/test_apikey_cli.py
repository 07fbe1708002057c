"""``fleetgate apikey``, and the audit entries that every command writes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetgate.cli.apikeys import app
from fleetgate.cli.cas import app as cas_app
from fleetgate.cli.devices import app as devices_app
from fleetgate.cli.projects import app as projects_app
from fleetgate.store import apikeys
from fleetgate.store.audit import list_audit_entries
from fleetgate.store.database import Database
from store.certs import make_root

from .conftest import Invoke


@pytest.fixture(autouse=True)
def project(invoke: Invoke) -> None:
    assert invoke(projects_app, "create", "acme").exit_code == 0


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    opened = Database.open(database_url)
    yield opened
    opened.dispose()


def created_key_id(stderr: str) -> str:
    match = re.search(r"Created API key ([0-9a-f]{24})", stderr)
    assert match is not None, stderr
    return match.group(1)


def test_create_prints_key_alone_on_stdout(invoke: Invoke, db: Database) -> None:
    result = invoke(app, "create", "--project", "acme", "--name", "ci")
    secret = result.stdout.strip()
    assert result.exit_code == 0
    assert re.fullmatch(r"fgk_[A-Za-z0-9_-]{43}", secret), result.stdout
    assert "shown only once" in result.stderr
    assert apikeys.authenticate(db, secret).project_id == "acme"


def test_list_shows_prefix_not_secret(invoke: Invoke) -> None:
    created = invoke(app, "create", "--project", "acme", "--name", "ci")
    secret = created.stdout.strip()
    listed = invoke(app, "list", "--project", "acme")
    assert listed.exit_code == 0
    assert created_key_id(created.stderr) in listed.stdout
    assert secret[: apikeys.PREFIX_LENGTH] in listed.stdout
    assert secret not in listed.stdout
    assert "ci" in listed.stdout


def test_revoke_stops_the_key(invoke: Invoke, db: Database) -> None:
    created = invoke(app, "create", "--project", "acme")
    key_id = created_key_id(created.stderr)
    revoked = invoke(app, "revoke", "--project", "acme", key_id)
    assert revoked.exit_code == 0
    assert revoked.stdout.strip() == f"Revoked API key {key_id}"
    assert apikeys.list_api_keys(db, "acme")[0].revoked_at is not None


def test_revoke_unknown_key_exits_1(invoke: Invoke) -> None:
    result = invoke(app, "revoke", "--project", "acme", "0" * 24)
    assert result.exit_code == 1
    assert "cannot find API key" in result.stderr


def test_admin_key_reaches_every_project(invoke: Invoke, db: Database) -> None:
    result = invoke(app, "create", "--admin")
    assert result.exit_code == 0
    assert "every project" in result.stderr
    assert apikeys.authenticate(db, result.stdout.strip()).is_admin is True
    assert len(apikeys.list_api_keys(db, None)) == 1


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("create",), id="fail/neither"),
        pytest.param(("create", "--admin", "--project", "acme"), id="fail/both"),
    ],
)
def test_scope_needs_project_or_admin(invoke: Invoke, args: tuple[str, ...]) -> None:
    result = invoke(app, *args)
    assert result.exit_code == 2
    assert "either --project ID or --admin" in result.stderr


def test_unknown_project_exits_1(invoke: Invoke) -> None:
    result = invoke(app, "create", "--project", "nobody")
    assert result.exit_code == 1
    assert "cannot find project 'nobody'" in result.stderr


def test_cli_actions_are_audited_as_cli(
    invoke: Invoke, db: Database, tmp_path: Path
) -> None:
    root_file = tmp_path / "root.pem"
    root_file.write_bytes(make_root().pem)
    invoke(cas_app, "upload", "--project", "acme", str(root_file))
    invoke(devices_app, "create", "--project", "acme", "pump-1")
    invoke(app, "create", "--project", "acme")
    entries = list_audit_entries(db, "acme").items
    assert [entry.action for entry in entries] == [
        "apikey.create",
        "device.create",
        "ca.create",
        "project.create",
    ]
    assert {entry.actor for entry in entries} == {"cli"}
