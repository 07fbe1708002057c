"""A quarantine from the command line stops notifications to an observer.

``coap-client-openssl -s`` observes a value and sends nothing else, so
only the gateway's own recheck of the session can find the device
disabled by ``fleetgate quarantine start`` in another process.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from fleetgate.pki.identity import fingerprint, load_certificates

from .conftest import (
    COAP_CLIENT,
    RunningServer,
    fleetgate,
    requires_coap_client,
    start_server,
    stop_server,
)
from .device_pki import register_fleet

pytestmark = requires_coap_client

PROJECT = "acme-sensors"
OBSERVE_SECONDS = 25
# The recheck runs every 5 s; this leaves room for a loaded machine.
RECHECK_WAIT_SECONDS = 8.0


def put_state(server: RunningServer, device_id: str, value: int) -> None:
    assert server.api_url is not None and server.admin_key is not None
    response = httpx.put(
        f"{server.api_url}/v1/projects/{PROJECT}/devices/{device_id}/data/sensor",
        json=value,
        headers={"x-api-key": server.admin_key},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def only_device_id(server: RunningServer) -> str:
    assert server.api_url is not None and server.admin_key is not None
    response = httpx.get(
        f"{server.api_url}/v1/projects/{PROJECT}/devices",
        headers={"x-api-key": server.admin_key},
        timeout=10,
    )
    (device,) = response.json()["list"]
    return str(device["id"])


def test_cli_quarantine_stops_observer_notifications(
    data_dir: Path, tmp_path: Path
) -> None:
    assert COAP_CLIENT is not None
    device = register_fleet(data_dir, tmp_path / "pki", PROJECT, ["sensor-1"])[0]
    (root,) = load_certificates((tmp_path / "pki" / "root.pem").read_bytes())
    server = start_server(data_dir)
    try:
        observer = subprocess.Popen(
            [
                COAP_CLIENT,
                "-s",
                str(OBSERVE_SECONDS),
                "-B",
                str(OBSERVE_SECONDS + 5),
                "-c",
                str(device.cert),
                "-j",
                str(device.key),
                "-R",
                str(server.server_ca),
                server.url(".d/sensor"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(3.0)  # the handshake and the registration
            device_id = only_device_id(server)
            put_state(server, device_id, 1001)

            started = fleetgate(
                data_dir,
                "quarantine",
                "start",
                "--ca",
                fingerprint(root),
                "-p",
                PROJECT,
            )
            time.sleep(RECHECK_WAIT_SECONDS)
            put_state(server, device_id, 2002)
            time.sleep(1.0)
        finally:
            observer.terminate()
            output, _ = observer.communicate(timeout=10)
    finally:
        stop_server(server)

    assert "1001" in output
    assert "2002" not in output
    assert "1 device disabled" in started.stdout
    assert "reason=device_disabled" in server.log()
