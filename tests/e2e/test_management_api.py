"""The management API of the real server, driven with httpx next to a device.

The server runs as ``fleetgate serve`` on loopback. Devices are played
by ``coap-client-openssl`` with certificates from the documented openssl
recipe, so these tests cover the API, the shared database and the
gateway's trust cache together.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import (
    RunningServer,
    coap_client,
    fleetgate,
    requires_coap_client,
    start_server,
    stop_server,
)
from .test_first_device import make_recipe_pki

pytestmark = [pytest.mark.e2e]

PROJECT = "acme-sensors"
CERT_ID = "sensor-0001"


@pytest.fixture
def api_server(data_dir: Path) -> Iterator[RunningServer]:
    running = start_server(data_dir)
    yield running
    stop_server(running)


def client(server: RunningServer, key: str | None) -> httpx.Client:
    assert server.api_url is not None
    headers = {} if key is None else {"x-api-key": key}
    return httpx.Client(base_url=server.api_url, headers=headers, timeout=10)


def project_key(data_dir: Path, project: str) -> str:
    created = fleetgate(data_dir, "apikey", "create", "--project", project)
    return created.stdout.strip()


def test_first_start_prints_admin_key_once(data_dir: Path) -> None:
    first = start_server(data_dir)
    try:
        assert first.admin_key is not None
        with client(first, first.admin_key) as admin:
            assert admin.get("/v1/projects").status_code == 200
    finally:
        assert stop_server(first) == 0

    second = start_server(data_dir)
    try:
        assert second.admin_key is None
        with client(second, first.admin_key) as admin:
            assert admin.get("/v1/projects").status_code == 200
    finally:
        assert stop_server(second) == 0
    assert first.admin_key not in second.log()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])
def test_signal_stops_api_and_gateway(data_dir: Path, signum: int) -> None:
    running = start_server(data_dir)
    with client(running, running.admin_key) as admin:
        assert admin.get("/v1/projects").status_code == 200

    running.process.send_signal(signum)
    status = running.process.wait(timeout=15)

    assert status == 0
    assert "management API stopped" in running.log()
    assert "device gateway stopped" in running.log()
    assert "Traceback" not in running.log()


def test_no_api_option(data_dir: Path) -> None:
    running = start_server(data_dir, "--no-api")
    try:
        assert running.api_url is None
        assert "API ready" not in running.log()
    finally:
        assert stop_server(running) == 0


def test_api_port_in_use_fails_cleanly(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "fleetgate",
                "serve",
                "--data-dir",
                str(data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--api-host",
                "127.0.0.1",
                "--api-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot start the management API on 127.0.0.1 port {port}" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_projects_are_isolated(api_server: RunningServer, data_dir: Path) -> None:
    with client(api_server, api_server.admin_key) as admin:
        for project in ("alpha", "beta"):
            assert admin.post("/v1/projects", json={"id": project}).status_code == 200
    alpha_key = project_key(data_dir, "alpha")
    beta_key = project_key(data_dir, "beta")

    with client(api_server, alpha_key) as alpha, client(api_server, beta_key) as beta:
        device = alpha.post("/v1/projects/alpha/devices", json={"name": "d1"})
        device_id = device.json()["data"]["id"]
        own = alpha.get(f"/v1/projects/alpha/devices/{device_id}")
        theirs = beta.get(f"/v1/projects/beta/devices/{device_id}")
        cross = beta.get(f"/v1/projects/alpha/devices/{device_id}")
        cross_list = beta.get("/v1/projects/alpha/devices")
        listed = beta.get("/v1/projects").json()["list"]
        create_project = beta.post("/v1/projects", json={"id": "gamma"})

    assert own.status_code == 200
    assert theirs.status_code == 404
    assert cross.status_code == 404
    assert cross_list.status_code == 404
    assert cross.json()["message"] == "cannot find project 'alpha'"
    assert [project["id"] for project in listed] == ["beta"]
    assert create_project.status_code == 403


def test_revoked_key_is_rejected_at_once(
    api_server: RunningServer, data_dir: Path
) -> None:
    fleetgate(data_dir, "project", "create", PROJECT)
    created = fleetgate(data_dir, "apikey", "create", "--project", PROJECT)
    key = created.stdout.strip()
    key_id = created.stderr.split("Created API key ")[1].split()[0]

    with client(api_server, key) as api:
        before = api.get(f"/v1/projects/{PROJECT}/devices")
        fleetgate(data_dir, "apikey", "revoke", "--project", PROJECT, key_id)
        after = api.get(f"/v1/projects/{PROJECT}/devices")
    with client(api_server, None) as anonymous:
        missing = anonymous.get("/v1/projects")

    assert before.status_code == 200
    assert after.status_code == 401
    assert after.json()["code"] == "revoked_api_key"
    assert missing.status_code == 401
    assert missing.json()["code"] == "missing_api_key"
    assert key not in api_server.log()


@requires_coap_client
def test_ca_and_device_life(
    api_server: RunningServer, data_dir: Path, tmp_path: Path
) -> None:
    recipe = tmp_path / "pki"
    make_recipe_pki(recipe, PROJECT, CERT_ID)
    cert, key = recipe / "device.pem", recipe / "device.key"
    root_b64 = base64.b64encode((recipe / "root.pem").read_bytes()).decode()
    devices = f"/v1/projects/{PROJECT}/devices"
    certificates = f"/v1/projects/{PROJECT}/certificates"

    with client(api_server, api_server.admin_key) as admin:
        assert admin.post("/v1/projects", json={"id": PROJECT}).status_code == 200
    with client(api_server, project_key(data_dir, PROJECT)) as api:
        ca = api.post(certificates, json={"certFile": root_b64, "certType": "root"})
        assert ca.status_code == 200, ca.text
        ca_id = ca.json()["data"]["id"]
        pre = api.post(devices, json={"name": CERT_ID, "tagIds": ["lab"]})
        device_id = pre.json()["data"]["id"]
        state = f"{devices}/{device_id}/data"
        assert api.put(f"{state}/config", json={"interval": 30}).status_code == 200

        # The device connects, is adopted, and reads what the API wrote.
        read = coap_client(api_server, ".d/config", cert=cert, key=key)
        assert json.loads(read.stdout.strip()) == {"interval": 30}, read.output
        listed = api.get(devices).json()
        assert listed["total"] == 1
        device = listed["list"][0]
        assert device["id"] == device_id
        assert device["certificateId"] == CERT_ID
        assert device["tagIds"] == ["lab"]
        assert device["lastReport"] is not None
        assert device["certificate"]["lastFingerprint"]
        assert device["certificate"]["notAfter"]

        # The device writes and the API reads.
        posted = coap_client(
            api_server,
            ".d/reported",
            cert=cert,
            key=key,
            method="post",
            payload='{"temp":21.5}',
            content_format=50,
        )
        assert "4." not in posted.stdout, posted.output
        assert api.get(f"{state}/reported").json() == {"data": {"temp": 21.5}}

        # Disabling the CA takes effect on the next handshake, without
        # waiting for the trust cache to expire.
        disabled = api.patch(f"{certificates}/{ca_id}", json={"enabled": False})
        assert disabled.json()["data"]["enabled"] is False
        rejected = coap_client(api_server, ".d/config", cert=cert, key=key)
        assert "unknown ca" in rejected.output.lower(), rejected.output

        api.patch(f"{certificates}/{ca_id}", json={"enabled": True})
        again = coap_client(api_server, ".d/config", cert=cert, key=key)
        assert json.loads(again.stdout.strip()) == {"interval": 30}, again.output

        # Deleting the device and the CA leaves nothing behind.
        assert api.delete(f"{devices}/{device_id}").json() == {}
        assert api.delete(f"{certificates}/{ca_id}").json() == {}
        assert api.get(certificates).json()["total"] == 0
        audit = api.get(f"/v1/projects/{PROJECT}/audit").json()["list"]

    assert [entry["action"] for entry in audit][:3] == [
        "ca.delete",
        "device.delete",
        "ca.enable",
    ]
    assert f"device adopted project={PROJECT}" in api_server.log()
    assert stop_server(api_server) == 0
