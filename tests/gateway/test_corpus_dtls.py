"""The certificate corpus end to end: real DTLS handshakes with the reference client.

Each case of ``tests/corpus/cases.toml`` is presented by the reference
client to the in-process gateway. An accepted case must be served. A
rejected one must end with a DTLS alert and exactly one WARNING line
that carries the case's reason code. No case may log an ERROR.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from corpus import (
    ACCEPTED,
    PROJECT_A,
    PROJECT_B,
    SAME_NAME,
    CorpusCase,
    case_params,
    write_corpus,
)
from fleetgate.client import CredentialsError, HandshakeFailed, HandshakeRefused
from fleetgate.store import certificates, devices, projects
from fleetgate.store.database import Database

from .conftest import DeviceFiles, GatewayThread, connect
from .test_handshake import refusal_lines

# over_dtls outcome of a chain the reference client cannot load, so no
# handshake starts.
NOT_SENT = "not_sent"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly generated corpus folder."""
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus(folder)
    return folder


@pytest.fixture
def corpus_projects(database: Database, corpus: Path) -> Database:
    """Both corpus projects, each with its root registered."""
    for project_id in (PROJECT_A, PROJECT_B):
        projects.create_project(database, project_id)
        pem = (corpus / "anchors" / f"{project_id}.pem").read_bytes()
        certificates.add_ca_certificate(database, project_id, pem)
    return database


def device_files(corpus: Path, case: CorpusCase) -> DeviceFiles:
    return DeviceFiles(corpus / case.file, corpus / f"{case.stem}.key")


def certificate_ids(db: Database) -> list[str | None]:
    listed = devices.list_devices(db, PROJECT_A).items
    return [device.certificate_id for device in listed]


def run_case(gateway: GatewayThread, files: DeviceFiles) -> tuple[str, str | None]:
    """Connect and GET ``.d``; return the outcome and any alert received."""
    try:
        with connect(gateway, files) as client:
            reply = client.request("GET", ".d")
    except CredentialsError:
        return NOT_SENT, None
    except HandshakeRefused as exc:
        return "refused", exc.alert
    except HandshakeFailed:
        return "refused", None
    assert reply.code.dotted == "2.05", reply
    return ACCEPTED, None


@pytest.mark.parametrize("case", case_params())
def test_corpus_case_over_dtls(
    case: CorpusCase,
    corpus: Path,
    corpus_projects: Database,
    gateway: GatewayThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="fleetgate")
    expected = case.over_dtls or case.expect

    result, alert = run_case(gateway, device_files(corpus, case))

    lines = refusal_lines(caplog)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    if expected == ACCEPTED:
        assert result == ACCEPTED
        assert lines == []
        assert len(certificate_ids(corpus_projects)) == 1
    elif expected == NOT_SENT:
        assert result == NOT_SENT
        assert lines == []
    else:
        assert result == "refused"
        assert len(lines) == 1, lines
        assert f"reason={expected} " in lines[0]
        assert certificate_ids(corpus_projects) == []
    if expected not in (ACCEPTED, NOT_SENT, "handshake_failed"):
        # Refused inside the verify callback, so the device hears why.
        assert alert in ("bad_certificate", "unknown_ca", "certificate_expired")
    assert wait_for_sessions(gateway, 1 if result == ACCEPTED else 0)


def wait_for_sessions(gateway: GatewayThread, count: int) -> bool:
    """Wait up to 2 s for the session table to hold at most ``count`` entries."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if gateway.session_count() <= count:
            return True
        time.sleep(0.05)
    return False


def test_string_encodings_reach_one_device(
    corpus: Path, corpus_projects: Database, gateway: GatewayThread
) -> None:
    for stem in ("utf8string-cn", "bmpstring-cn"):
        files = DeviceFiles(corpus / f"{stem}.pem", corpus / f"{stem}.key")
        assert run_case(gateway, files) == (ACCEPTED, None)

    assert certificate_ids(corpus_projects) == [SAME_NAME]
