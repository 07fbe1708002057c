"""``fleetgate pki explain``."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from fleet.pki import ProjectPki
from fleetgate.cli.explain import EXIT_REJECTED
from fleetgate.cli.main import app
from fleetgate.pki import tools
from fleetgate.pki.identity import fingerprint
from fleetgate.store import devices
from fleetgate.store.database import Database

from .conftest import Invoke


def _write(path: Path, chain: list) -> Path:
    path.write_bytes(b"".join(cert.public_bytes(Encoding.PEM) for cert in chain))
    return path


def test_explain_prints_tables(
    invoke: Invoke, database: Database, tmp_path: Path
) -> None:
    pki = ProjectPki(database)
    leaf, intermediate = pki.device("sensor-1", via_intermediate=True)
    cert = _write(tmp_path / "leaf.pem", [leaf])
    chain = _write(tmp_path / "chain.pem", [intermediate])

    result = invoke(
        app, "pki", "explain", str(cert), "--chain", str(chain), "-p", "acme"
    )

    assert result.exit_code == 0, result.output
    assert "accepted" in result.stdout
    assert "Fleet Intermediate" in result.stdout
    assert "at depth 2" in result.stdout
    assert "creates a device named after the certificate ID" in result.stdout


def test_explain_json_matches_api_shape(
    invoke: Invoke, database: Database, tmp_path: Path
) -> None:
    pki = ProjectPki(database)
    cert = _write(tmp_path / "leaf.pem", pki.device("sensor-1", via_intermediate=True))

    result = invoke(app, "pki", "explain", str(cert), "-p", "acme", "--json")

    body = json.loads(result.stdout)
    assert body["anchor"]["fingerprint"] == fingerprint(pki.root)
    assert body["rules"][0]["rule"] == "subject"


def test_explain_missing_file_is_one_line(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke(app, "pki", "explain", str(tmp_path / "no.pem"), "-p", "acme")

    assert result.exit_code == 1
    assert "cannot read certificate" in result.output


def _stranger_leaf(tmp_path: Path) -> Path:
    """Write a device certificate from a CA the project does not know."""
    other_key, other_root = tools.make_root("Stranger Root")
    csr = tools.make_device_csr(tools.make_device_key(), "acme", "sensor-1")
    leaf = tools.sign_device_csr(csr, other_key, other_root)
    return _write(tmp_path / "leaf.pem", [leaf])


def test_explain_disabled_device_exits_rejected(
    invoke: Invoke, database: Database, tmp_path: Path
) -> None:
    pki = ProjectPki(database)
    record = devices.create_device(database, "acme", "sensor-1")
    devices.set_device_enabled(database, "acme", record.id, False)
    cert = _write(tmp_path / "leaf.pem", pki.device("sensor-1"))

    result = invoke(app, "pki", "explain", str(cert), "-p", "acme")

    assert result.exit_code == EXIT_REJECTED, result.output
    assert "Verdict: rejected (device_disabled)" in result.stdout
    assert "the chain verifies, but" in result.stdout


def test_explain_refused_chain_skips_association(
    invoke: Invoke, database: Database, tmp_path: Path
) -> None:
    ProjectPki(database)
    cert = _stranger_leaf(tmp_path)

    result = invoke(app, "pki", "explain", str(cert), "-p", "acme", "--json")
    body = json.loads(result.stdout)

    assert result.exit_code == EXIT_REJECTED
    assert body["accepted"] is False
    assert body["reason"] == "unknown_ca"
    assert body["association"] is None


def test_explain_refused_chain_says_association_not_reached(
    invoke: Invoke, database: Database, tmp_path: Path
) -> None:
    ProjectPki(database)
    cert = _stranger_leaf(tmp_path)

    result = invoke(app, "pki", "explain", str(cert), "-p", "acme")

    assert "Association: never reached, the chain is rejected" in result.stdout
    assert "creates a device" not in result.stdout
