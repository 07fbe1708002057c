"""The server survives a PostgreSQL outage and loses no acknowledged write.

The real ``fleetgate serve`` runs on a throwaway PostgreSQL cluster that
the test stops and starts again. During the outage devices get 5.03
with Max-Age and the API 503 with Retry-After; afterwards both recover
without a restart of Fleetgate.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from aiocoap.numbers.codes import Code

from fleetgate.client import JSON, DeviceClient
from fleetgate.errors import StoreUnavailable

from .conftest import RunningServer, start_server, stop_server
from .device_pki import DeviceFiles, register_fleet
from .postgres import PostgresCluster, postgres_cluster, requires_postgres_binaries

pytestmark = [pytest.mark.e2e, requires_postgres_binaries]

__all__ = ["postgres_cluster"]

PROJECT = "outage"
RECOVERY_TIMEOUT = 20.0
# Requests sent while the database is down, by devices and to the API.
OUTAGE_REQUESTS = 20


def device_client(server: RunningServer, device: DeviceFiles) -> DeviceClient:
    """Return a client for ``device``; the session opens on connect()."""
    return DeviceClient(
        "127.0.0.1",
        server.port,
        device.cert,
        device.key,
        server.server_ca,
        timeout=5.0,
    )


def connect(server: RunningServer, device: DeviceFiles) -> DeviceClient:
    """Open a DTLS session as ``device``."""
    client = device_client(server, device)
    client.connect()
    return client


def write(client: DeviceClient, path: str, value: object) -> Code:
    """POST a JSON value to LightDB State and return the response code."""
    payload = json.dumps(value).encode()
    return client.request("POST", f".d/{path}", payload, content_format=JSON).code


def test_postgres_outage_and_recovery(
    tmp_path: Path, postgres_cluster: PostgresCluster
) -> None:
    data_dir = tmp_path / "data"
    url_option = ("--database-url", postgres_cluster.url)
    first, second = register_fleet(
        data_dir, tmp_path / "pki", PROJECT, ["dev-1", "dev-2"], *url_option
    )
    server = start_server(data_dir, *url_option)
    assert server.admin_key is not None
    api = httpx.Client(
        base_url=server.api_url or "",
        headers={"x-api-key": server.admin_key},
        timeout=10.0,
    )
    try:
        # Before: one acknowledged write, and a session that stays open.
        open_session = connect(server, first)
        assert write(open_session, "before", 1) == Code.CHANGED
        assert api.get(f"/v1/projects/{PROJECT}/devices").status_code == 200

        postgres_cluster.stop()

        # During: the open session's writes and reads get 5.03 + Max-Age.
        for index in range(OUTAGE_REQUESTS // 2):
            reply = open_session.request(
                "POST", ".d/during", json.dumps(index).encode(), content_format=JSON
            )
            assert reply.code == Code.SERVICE_UNAVAILABLE
            assert reply.max_age == StoreUnavailable.retry_after

        # A new session completes its handshake, then association gets 5.03.
        new_session = connect(server, second)
        reply = new_session.request("GET", ".d")
        assert reply.code == Code.SERVICE_UNAVAILABLE
        assert reply.max_age == StoreUnavailable.retry_after
        new_session.close()

        for _ in range(OUTAGE_REQUESTS // 2):
            response = api.get(f"/v1/projects/{PROJECT}/devices")
            assert response.status_code == 503
            assert response.headers["retry-after"] == str(StoreUnavailable.retry_after)
            assert response.json()["code"] == "store_unavailable"

        assert server.process.poll() is None
        outage_log = server.log()
        assert outage_log.count("database unavailable") == 1
        assert outage_log.count("reason=store_unavailable") < OUTAGE_REQUESTS

        postgres_cluster.start()

        # After: the same session and a new one are served again.
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        code = write(open_session, "after", 2)
        while code != Code.CHANGED and time.monotonic() < deadline:
            time.sleep(0.2)
            code = write(open_session, "after", 2)
        assert code == Code.CHANGED
        open_session.close()

        with device_client(server, second) as late:
            assert write(late, "after", 3) == Code.CHANGED

        with device_client(server, first) as reader:
            reply = reader.request("GET", ".d", accept=JSON)
        assert reply.code == Code.CONTENT
        assert json.loads(reply.payload) == {"before": 1, "after": 2}

        devices = api.get(f"/v1/projects/{PROJECT}/devices").json()["list"]
        assert sorted(device["name"] for device in devices) == ["dev-1", "dev-2"]
        assert "database available again" in server.log()
    finally:
        api.close()
        assert stop_server(server) == 0
