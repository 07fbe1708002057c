"""SIGKILL during device writes loses no acknowledged write and duplicates no device.

Several devices write LightDB State and LightDB Stream records over
DTLS, each waiting for the acknowledgement before its next write, while
``fleetgate serve`` is killed with SIGKILL. After a restart on the same
database every acknowledged value and record must be stored, and each
certificate ID must still map to exactly one device.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from aiocoap.numbers.codes import Code

from fleetgate.client import JSON, ClientError, DeviceClient, TransmissionParameters

from .conftest import RunningServer, start_server, stop_server
from .device_pki import DeviceFiles, register_fleet
from .postgres import PG_BINARIES, PostgresCluster, postgres_cluster

pytestmark = [pytest.mark.e2e]

__all__ = ["postgres_cluster"]

PROJECT = "crash"
DEVICES = 4
# Each device stops after this many writes even if the kill comes late.
MAX_WRITES_PER_DEVICE = 400
# How long the devices write before the server is killed, in seconds.
WRITE_SECONDS = 1.5
THREAD_TIMEOUT = 30.0
# Short retransmission, so writers notice the dead server quickly.
FAST_FAIL = TransmissionParameters(ack_timeout=0.5, max_retransmit=1)


class Writer(threading.Thread):
    """Writes ``w/<n>`` = n and a stream record {"n": n} for n = 0, 1, ...

    Each acknowledged state write and stream record is remembered.
    """

    def __init__(self, server: RunningServer, device: DeviceFiles) -> None:
        super().__init__(name=f"writer-{device.certificate_id}", daemon=True)
        self.server = server
        self.device = device
        self.acknowledged: list[int] = []
        self.streamed: list[int] = []
        self.error: str | None = None

    def run(self) -> None:
        client = DeviceClient(
            "127.0.0.1",
            self.server.port,
            self.device.cert,
            self.device.key,
            self.server.server_ca,
            timeout=5.0,
            transmission=FAST_FAIL,
        )
        try:
            client.connect()
            for index in range(MAX_WRITES_PER_DEVICE):
                reply = client.request(
                    "POST",
                    f".d/w/{index}",
                    json.dumps(index).encode(),
                    content_format=JSON,
                )
                if reply.code != Code.CHANGED:
                    self.error = f"write {index} got {reply.code}"
                    return
                self.acknowledged.append(index)
                reply = client.request(
                    "POST",
                    ".s/crash",
                    json.dumps({"n": index}).encode(),
                    content_format=JSON,
                )
                if not reply.successful:
                    self.error = f"stream record {index} got {reply.code}"
                    return
                self.streamed.append(index)
        except ClientError as exc:
            # Expected once the server is killed.
            self.error = str(exc)
        finally:
            client.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_options(
    request: pytest.FixtureRequest,
) -> tuple[str, ...]:
    """Command-line options that pick the database under test."""
    if request.param == "sqlite":
        return ()
    if not PG_BINARIES:
        pytest.skip("PostgreSQL server binaries (Debian postgresql) not installed")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return ("--database-url", cluster.url)


def test_sigkill_loses_no_acknowledged_write(
    tmp_path: Path, database_options: tuple[str, ...]
) -> None:
    data_dir = tmp_path / "data"
    names = [f"crash-{index}" for index in range(DEVICES)]
    fleet = register_fleet(
        data_dir, tmp_path / "pki", PROJECT, names, *database_options
    )
    server = start_server(data_dir, *database_options)
    admin_key = server.admin_key
    assert admin_key is not None

    writers = [Writer(server, device) for device in fleet]
    for writer in writers:
        writer.start()
    time.sleep(WRITE_SECONDS)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    for writer in writers:
        writer.join(THREAD_TIMEOUT)
        assert not writer.is_alive()

    restarted = start_server(data_dir, *database_options)
    try:
        # A new association per device after the crash must not add devices.
        for device in fleet:
            with DeviceClient(
                "127.0.0.1",
                restarted.port,
                device.cert,
                device.key,
                restarted.server_ca,
                timeout=5.0,
            ) as client:
                assert client.request("GET", ".d/w/0").successful

        with httpx.Client(
            base_url=restarted.api_url or "",
            headers={"x-api-key": admin_key},
            timeout=10.0,
        ) as api:
            listed = api.get(f"/v1/projects/{PROJECT}/devices", params={"perPage": 100})
            devices = listed.json()["list"]
            documents = {
                device["certificateId"]: api.get(
                    f"/v1/projects/{PROJECT}/devices/{device['id']}/data"
                ).json()["data"]
                for device in devices
            }
            streams = {
                device["certificateId"]: api.get(
                    f"/v1/projects/{PROJECT}/devices/{device['id']}/stream",
                    params={"perPage": 1000},
                ).json()["list"]
                for device in devices
            }
    finally:
        assert stop_server(restarted) == 0

    acknowledged = sum(len(writer.acknowledged) for writer in writers)
    streamed = sum(len(writer.streamed) for writer in writers)
    print(f"acknowledged before SIGKILL: {acknowledged} writes, {streamed} records")
    assert acknowledged >= DEVICES
    assert sorted(device["certificateId"] for device in devices) == names
    assert sorted(device["name"] for device in devices) == names
    for writer in writers:
        stored = documents[writer.device.certificate_id].get("w", {})
        missing = [n for n in writer.acknowledged if stored.get(str(n)) != n]
        assert missing == [], f"{writer.device.certificate_id} lost {missing}"

    for writer in writers:
        records = streams[writer.device.certificate_id]
        stored_records = {item["data"]["crash"]["n"] for item in records}
        lost = [n for n in writer.streamed if n not in stored_records]
        assert lost == [], f"{writer.device.certificate_id} lost records {lost}"
