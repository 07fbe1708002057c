"""The connection log, /metrics and JSON logs of the real server, end to end.

One ``fleetgate serve`` with ``--log-format json`` and
``--metrics-without-key`` serves an accepted and a refused device,
played by ``coap-client-openssl``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetgate.pki import tools

from .conftest import (
    RunningServer,
    coap_client,
    requires_coap_client,
    start_server,
    stop_server,
)
from .device_pki import DeviceFiles, register_fleet

pytestmark = [pytest.mark.e2e, requires_coap_client]

PROJECT = "acme-sensors"
# Shaped like an API key, sent where a project ID goes.
KEY_LIKE = "fgk_" + "Zz9_" * 10 + "abc"
WRITE_TIMEOUT = 5.0
HANDSHAKES = "fleetgate_handshakes_total"
PROVISIONED = "fleetgate_devices_provisioned_total"


def stranger_device(folder: Path) -> DeviceFiles:
    """A device of the project whose root is not registered."""
    root_key, root = tools.make_root("Unregistered Root")
    key = tools.make_device_key()
    csr = tools.make_device_csr(key, PROJECT, "sensor-9")
    files = DeviceFiles("sensor-9", folder / "sensor-9.pem", folder / "sensor-9.key")
    tools.write_certificate(files.cert, tools.sign_device_csr(csr, root_key, root))
    tools.write_private_key(files.key, key)
    return files


def metric(text: str, name: str, labels: str) -> float:
    """Return the value of one sample in Prometheus text, or 0."""
    prefix = f"{name}{{{labels}}} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def wait_for_events(server: RunningServer, query: str) -> list[dict[str, str]]:
    """Poll the connection log API until ``query`` lists an event."""
    assert server.api_url is not None and server.admin_key is not None
    url = f"{server.api_url}/v1/projects/{PROJECT}/connections?{query}"
    deadline = time.monotonic() + WRITE_TIMEOUT
    while True:
        response = httpx.get(url, headers={"x-api-key": server.admin_key}, timeout=5)
        events: list[dict[str, str]] = response.json()["list"]
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


@pytest.fixture
def device(tmp_path: Path) -> DeviceFiles:
    """A registered device of the project, made before the server starts."""
    [files] = register_fleet(tmp_path / "data", tmp_path / "pki", PROJECT, ["sensor-1"])
    return files


@pytest.fixture
def server(tmp_path: Path, device: DeviceFiles) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path / "data",
        "--log-format",
        "json",
        "--log-level",
        "DEBUG",
        "--metrics-without-key",
    )
    yield running
    stop_server(running)


def test_observability_end_to_end(
    server: RunningServer, device: DeviceFiles, tmp_path: Path
) -> None:
    try:
        accepted = coap_client(server, ".d", cert=device.cert, key=device.key)
        stranger = stranger_device(tmp_path / "pki")
        refused = coap_client(server, ".d", cert=stranger.cert, key=stranger.key)
        assert server.api_url is not None and server.admin_key is not None
        httpx.get(
            f"{server.api_url}/v1/projects/{KEY_LIKE}/devices",
            headers={"x-api-key": server.admin_key},
            timeout=5,
        )
        scraped = httpx.get(f"{server.api_url}/metrics", timeout=5)
        rejected_events = wait_for_events(server, "reason=unknown_ca")
        by_certificate = wait_for_events(server, "certificate_id=sensor-1")
    finally:
        stop_server(server)

    assert "{}" in accepted.output
    assert "{}" not in refused.output

    # The connection log, through the API.
    assert [e["certificateId"] for e in rejected_events] == ["sensor-9"]
    assert by_certificate[-1]["result"] == "accepted"

    # /metrics from loopback, without a key.
    assert scraped.status_code == 200
    text = scraped.text
    accepted_count = metric(text, HANDSHAKES, 'reason="none",result="accepted"')
    refused_count = metric(text, HANDSHAKES, 'reason="unknown_ca",result="rejected"')
    created_count = metric(text, PROVISIONED, 'how="created"')
    assert accepted_count >= 1
    assert refused_count == 1
    assert created_count == 1

    # JSON log lines.
    lines = [line for line in server.log().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    refusals = [e for e in entries if e.get("reason") == "unknown_ca"]
    assert refusals, server.log()
    assert refusals[0]["message"] == "device rejected"
    assert refusals[0]["cert_id"] == "sensor-9"
    assert refusals[0]["level"] == "WARNING"
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert not [line for line in lines if server.admin_key in line]
    assert not [line for line in lines if KEY_LIKE in line]
    assert [line for line in lines if "fgk_[redacted]" in line]
