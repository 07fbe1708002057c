"""A device with an openssl-made certificate connects and appears, end to end.

These tests follow the README's walkthrough with the real server and
Debian's ``coap-client-openssl`` as the device.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fleetgate.pki import tools

from .conftest import (
    OPENSSL,
    RunningServer,
    coap_client,
    fleetgate,
    requires_coap_client,
    start_server,
    stop_server,
)

pytestmark = [pytest.mark.e2e, requires_coap_client]

PROJECT = "acme-sensors"
CERT_ID = "sensor-0001"


def openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def make_recipe_pki(folder: Path, project: str, certificate_id: str) -> None:
    """Make a root and a device certificate with the documented openssl commands."""
    folder.mkdir(parents=True, exist_ok=True)
    openssl(
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "root.key",
        cwd=folder,
    )
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "root.key",
        "-sha256",
        "-days",
        "365",
        "-subj",
        "/CN=Root CA",
        "-out",
        "root.pem",
        cwd=folder,
    )
    openssl(
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "device.key",
        cwd=folder,
    )
    openssl(
        "req",
        "-new",
        "-key",
        "device.key",
        "-subj",
        f"/O={project}/CN={certificate_id}",
        "-out",
        "device.csr",
        cwd=folder,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "device.csr",
        "-CA",
        "root.pem",
        "-CAkey",
        "root.key",
        "-CAcreateserial",
        "-out",
        "device.pem",
        "-days",
        "7",
        "-sha256",
        cwd=folder,
    )


def make_expired_device(folder: Path, project: str, certificate_id: str) -> None:
    """Sign a device certificate that expired yesterday with the recipe root."""
    root_key = serialization.load_pem_private_key(
        (folder / "root.key").read_bytes(), None
    )
    root = x509.load_pem_x509_certificate((folder / "root.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string(f"CN={certificate_id},O={project}"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(root_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    tools.write_private_key(folder / "expired.key", key)
    tools.write_certificate(folder / "expired.pem", certificate)


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    folder = tmp_path / "pki"
    make_recipe_pki(folder, PROJECT, CERT_ID)
    return folder


@pytest.fixture
def project_server(data_dir: Path, recipe: Path) -> RunningServer:
    fleetgate(data_dir, "project", "create", PROJECT)
    fleetgate(data_dir, "ca", "upload", "--project", PROJECT, str(recipe / "root.pem"))
    running = start_server(data_dir)
    yield running
    stop_server(running)


def device_names(data_dir: Path, project: str) -> list[dict[str, object]]:
    """Devices of ``project`` as the store holds them."""
    from fleetgate.config import Settings
    from fleetgate.store import devices
    from fleetgate.store.database import Database

    db = Database.open(Settings(data_dir=data_dir).resolved_database_url)
    try:
        page = devices.list_devices(db, project)
        return [
            {"name": d.name, "certificate_id": d.certificate_id} for d in page.items
        ]
    finally:
        db.dispose()


def test_recipe_device_posts_and_reads_state(
    project_server: RunningServer, recipe: Path, data_dir: Path
) -> None:
    cert, key = recipe / "device.pem", recipe / "device.key"

    posted = coap_client(
        project_server,
        ".d/sensor",
        cert=cert,
        key=key,
        method="post",
        payload='{"temp":21.5,"unit":"C"}',
        content_format=50,
    )
    assert "alert" not in posted.output.lower(), posted.output
    assert "4." not in posted.stdout, posted.output

    read = coap_client(project_server, ".d/sensor", cert=cert, key=key)
    assert json.loads(read.stdout.strip()) == {"temp": 21.5, "unit": "C"}, read.output

    assert device_names(data_dir, PROJECT) == [
        {"name": CERT_ID, "certificate_id": CERT_ID}
    ]


def test_unknown_path_is_not_found(project_server: RunningServer, recipe: Path) -> None:
    result = coap_client(
        project_server,
        ".d/nothing/here",
        cert=recipe / "device.pem",
        key=recipe / "device.key",
    )
    assert "4.04" in result.output, result.output


def test_state_survives_restart(data_dir: Path, recipe: Path) -> None:
    fleetgate(data_dir, "project", "create", PROJECT)
    fleetgate(data_dir, "ca", "upload", "--project", PROJECT, str(recipe / "root.pem"))
    cert, key = recipe / "device.pem", recipe / "device.key"

    first = start_server(data_dir)
    try:
        coap_client(
            first,
            ".d/config/interval",
            cert=cert,
            key=key,
            method="put",
            payload="30",
            content_format=50,
        )
    finally:
        assert stop_server(first) == 0

    second = start_server(data_dir)
    try:
        read = coap_client(second, ".d/config", cert=cert, key=key)
    finally:
        stop_server(second)
    assert json.loads(read.stdout.strip()) == {"interval": 30}, read.output


def test_ca_of_other_project_is_refused(data_dir: Path, recipe: Path) -> None:
    fleetgate(data_dir, "project", "create", PROJECT)
    fleetgate(data_dir, "project", "create", "other-project")
    fleetgate(
        data_dir, "ca", "upload", "--project", "other-project", str(recipe / "root.pem")
    )
    running = start_server(data_dir)
    try:
        result = coap_client(
            running, ".d/sensor", cert=recipe / "device.pem", key=recipe / "device.key"
        )
    finally:
        stop_server(running)

    assert "unknown ca" in result.output.lower(), result.output
    assert f"project={PROJECT} cert_id={CERT_ID} reason=unknown_ca" in running.log()
    assert device_names(data_dir, PROJECT) == []


def test_expired_certificate_is_refused(
    project_server: RunningServer, recipe: Path, data_dir: Path
) -> None:
    make_expired_device(recipe, PROJECT, "expired-0001")

    result = coap_client(
        project_server,
        ".d/sensor",
        cert=recipe / "expired.pem",
        key=recipe / "expired.key",
    )

    assert "certificate expired" in result.output.lower(), result.output
    assert "cert_id=expired-0001 reason=expired" in project_server.log()
    assert device_names(data_dir, PROJECT) == []


def test_preprovisioned_device_is_adopted(
    project_server: RunningServer, recipe: Path, data_dir: Path
) -> None:
    fleetgate(data_dir, "device", "create", "--project", PROJECT, CERT_ID)

    result = coap_client(
        project_server, ".d", cert=recipe / "device.pem", key=recipe / "device.key"
    )

    assert json.loads(result.stdout.strip()) == {}, result.output
    assert device_names(data_dir, PROJECT) == [
        {"name": CERT_ID, "certificate_id": CERT_ID}
    ]
    assert f"device adopted project={PROJECT}" in project_server.log()


def test_disabled_device_is_refused(
    project_server: RunningServer, recipe: Path, data_dir: Path
) -> None:
    cert, key = recipe / "device.pem", recipe / "device.key"
    coap_client(project_server, ".d", cert=cert, key=key)
    device_id = device_ids(data_dir, PROJECT)[CERT_ID]
    fleetgate(data_dir, "device", "disable", "--project", PROJECT, device_id)

    result = coap_client(project_server, ".d", cert=cert, key=key)

    assert "4.03" in result.output, result.output
    assert f"cert_id={CERT_ID} reason=device_disabled" in project_server.log()


def device_ids(data_dir: Path, project: str) -> dict[str, str]:
    """Map certificate IDs to device IDs in ``project``."""
    from fleetgate.config import Settings
    from fleetgate.store import devices
    from fleetgate.store.database import Database

    db = Database.open(Settings(data_dir=data_dir).resolved_database_url)
    try:
        return {
            str(d.certificate_id): d.id for d in devices.list_devices(db, project).items
        }
    finally:
        db.dispose()
