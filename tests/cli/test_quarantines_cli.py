"""``fleetgate quarantine``."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from fleetgate import provisioning
from fleetgate.cli.main import app
from fleetgate.cli.projects import app as projects_app
from fleetgate.store import devices
from fleetgate.store.database import Database

from .conftest import Invoke


def test_start_list_release(invoke: Invoke, database: Database, tmp_path: Path) -> None:
    assert invoke(projects_app, "create", "acme").exit_code == 0
    provisioning.associate(
        database,
        project_id="acme",
        certificate_id="sn-1",
        fingerprint="ab" * 32,
        not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
    )
    manifest = tmp_path / "m.csv"
    manifest.write_text("certificate_id\nsn-1\n")
    invoke(app, "manifest", "import", str(manifest), "--batch", "l1", "-p", "acme")

    started = invoke(app, "quarantine", "start", "--batch", "l1", "-p", "acme")
    match = re.search(
        r"Started quarantine ([0-9a-f]{24}): 1 device disabled", started.stdout
    )
    assert match is not None, started.output
    disabled = devices.list_devices(database, "acme").items[0].enabled
    listed = invoke(app, "quarantine", "list", "-p", "acme")
    released = invoke(app, "quarantine", "release", match.group(1), "-p", "acme")

    assert not disabled
    assert match.group(1) in listed.stdout
    assert "1 device enabled" in released.stdout
    assert devices.list_devices(database, "acme").items[0].enabled


def test_start_needs_one_target(invoke: Invoke) -> None:
    assert invoke(projects_app, "create", "acme").exit_code == 0

    result = invoke(app, "quarantine", "start", "-p", "acme")

    assert result.exit_code == 1
    assert "give either a manifest batch or a CA fingerprint" in result.output


def test_start_without_devices_says_zero(invoke: Invoke, tmp_path: Path) -> None:
    assert invoke(projects_app, "create", "acme").exit_code == 0
    manifest = tmp_path / "m.csv"
    manifest.write_text("certificate_id\nsn-never-seen\n")
    invoke(app, "manifest", "import", str(manifest), "--batch", "l1", "-p", "acme")

    started = invoke(app, "quarantine", "start", "--batch", "l1", "-p", "acme")

    assert started.exit_code == 0, started.output
    assert ": 0 devices disabled" in started.stdout
