"""PSK devices beside certificate devices, with the real server and libcoap.

Debian's ``coap-client-openssl`` 4.3.1 takes the key's bytes as the
text of ``-k``, so the credentials here use printable keys, as a
generated one is. One server serves the whole module, and each test
adds its own device.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from .conftest import (
    COAP_CLIENT,
    RunningServer,
    requires_coap_client,
    start_server,
    stop_server,
)
from .device_pki import DeviceFiles, register_fleet

pytestmark = [pytest.mark.e2e, requires_coap_client]

PROJECT = "acme-sensors"
_names = itertools.count(1)
# How long a refusal may take to reach the server's log, in seconds.
LOG_TIMEOUT = 5.0


def psk_command(
    server: RunningServer,
    path: str,
    *,
    identity: str,
    key: str,
    method: str = "get",
    payload: str | None = None,
    timeout: int = 5,
) -> list[str]:
    assert COAP_CLIENT is not None
    command = [COAP_CLIENT, "-B", str(timeout), "-m", method, "-u", identity, "-k", key]
    if payload is not None:
        command += ["-t", "50", "-e", payload]
    return [*command, server.url(path)]


def certificate_command(
    server: RunningServer,
    device: DeviceFiles,
    path: str,
    *,
    method: str = "get",
    payload: str | None = None,
) -> list[str]:
    assert COAP_CLIENT is not None
    command = [COAP_CLIENT, "-B", "5", "-m", method, "-c", str(device.cert)]
    command += ["-j", str(device.key), "-R", str(server.server_ca)]
    if payload is not None:
        command += ["-t", "50", "-e", payload]
    return [*command, server.url(path)]


def run_together(*commands: list[str]) -> list[str]:
    """Start every command at once and return what each printed."""
    processes = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for command in commands
    ]
    outputs = []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate(timeout=10)
        outputs.append(output)
    return outputs


def logged(server: RunningServer, *fields: str) -> bool:
    deadline = time.monotonic() + LOG_TIMEOUT
    while time.monotonic() < deadline:
        for line in server.log().splitlines():
            if "WARNING" in line and all(field in line for field in fields):
                return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("psk") / "data")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def cert_device(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> DeviceFiles:
    folder = tmp_path_factory.mktemp("pki")
    [device] = register_fleet(server.data_dir, folder, PROJECT, ["cert-1"])
    return device


@pytest.fixture(scope="module")
def api(server: RunningServer, cert_device: DeviceFiles) -> Iterator[httpx.Client]:
    # cert_device created the project.
    assert server.api_url is not None
    assert server.admin_key is not None
    with httpx.Client(
        base_url=f"{server.api_url}/v1/projects/{PROJECT}",
        headers={"x-api-key": server.admin_key},
        timeout=10,
    ) as client:
        yield client


@pytest.fixture
def credential(api: httpx.Client) -> dict[str, str]:
    """A new device with a PSK credential; ``psk_id`` names it in logs."""
    psk_id = f"sensor-psk-{next(_names)}"
    device = api.post("/devices", json={"name": psk_id})
    assert device.status_code == 200
    device_id = device.json()["data"]["id"]
    created = api.post(
        f"/devices/{device_id}/credentials", json={"identity": f"{psk_id}@{PROJECT}"}
    )
    assert created.status_code == 200
    data: dict[str, str] = created.json()["data"]
    return {**data, "psk_id": psk_id}


def test_psk_and_certificate_devices_served_together(
    server: RunningServer, cert_device: DeviceFiles, credential: dict[str, str]
) -> None:
    key = credential["preSharedKeyText"]

    run_together(
        psk_command(
            server,
            ".d/temp",
            identity=credential["identity"],
            key=key,
            method="post",
            payload="21",
        ),
        certificate_command(server, cert_device, ".d/temp", method="post", payload="7"),
    )
    psk_read, certificate_read = run_together(
        psk_command(server, ".d/temp", identity=credential["identity"], key=key),
        certificate_command(server, cert_device, ".d/temp"),
    )

    assert psk_read.strip() == "21"
    assert certificate_read.strip() == "7"
    assert key not in server.log()


def test_wrong_key_is_refused_and_logged(
    server: RunningServer, credential: dict[str, str]
) -> None:
    wrong = "a-wrong-key-of-32-characters!!!!"

    [output] = run_together(
        psk_command(server, ".d", identity=credential["identity"], key=wrong, timeout=3)
    )

    assert "{" not in output
    assert logged(
        server,
        f"project={PROJECT}",
        f"psk_id={credential['psk_id']} ",
        "reason=psk_mismatch",
    )
    assert wrong not in server.log()


def test_deleted_credential_is_refused_and_logged(
    server: RunningServer, api: httpx.Client, credential: dict[str, str]
) -> None:
    key = credential["preSharedKeyText"]
    run_together(
        psk_command(
            server,
            ".d/x",
            identity=credential["identity"],
            key=key,
            method="post",
            payload="1",
        )
    )
    [before] = run_together(
        psk_command(server, ".d/x", identity=credential["identity"], key=key)
    )
    deleted = api.delete(f"/credentials/{credential['id']}")

    [after] = run_together(
        psk_command(server, ".d/x", identity=credential["identity"], key=key, timeout=3)
    )

    assert deleted.status_code == 200
    assert before.strip() == "1"
    assert after.strip() != "1"
    assert logged(
        server,
        f"project={PROJECT}",
        f"psk_id={credential['psk_id']} ",
        "reason=unknown_psk_identity",
    )


def test_unknown_identity_is_refused_and_logged(server: RunningServer) -> None:
    run_together(
        psk_command(server, ".d", identity=f"ghost@{PROJECT}", key="x" * 32, timeout=3)
    )
    assert logged(
        server, f"project={PROJECT}", "psk_id=ghost", "reason=unknown_psk_identity"
    )
