"""``fleetgate serve --workers 2``: two gateway processes on one UDP port.

The server logs at DEBUG, so each worker's "handshake completed
peer=ADDRESS" line (prefixed ``worker=N``) shows which worker has a
client's session. The kernel spreads clients over the workers by a hash
of their addresses, so a test that needs a client on each worker opens
clients until it has them, a bounded number of times.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import cbor2
import httpx
import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from fleetgate.client import CBOR, JSON, DeviceClient
from fleetgate.client.errors import SessionClosed

from . import conftest as e2e_conftest
from .conftest import (
    RunningServer,
    coap_client,
    requires_coap_client,
    start_server,
    stop_server,
)
from .device_pki import DeviceFiles, register_fleet

pytestmark = requires_coap_client

PROJECT = "acme-sensors"
WORKERS = ("--workers", "2", "--log-level", "DEBUG")
# Clients opened at most while looking for one on a given worker; with
# two workers the chance of missing one is 2**-24.
MAX_CLIENTS = 24
WAIT_SECONDS = 20.0
STARTED = re.compile(r"gateway worker started worker=(?P<index>\d+) pid=(?P<pid>\d+)")


@pytest.fixture(scope="module", autouse=True)
def slow_start() -> Iterator[None]:
    """Allow more time to start: every worker is one more Python start-up."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(e2e_conftest, "START_TIMEOUT", 90.0)
        yield


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DeviceFiles]]:
    folder = tmp_path_factory.mktemp("workers")
    data_dir = folder / "data"
    devices = register_fleet(data_dir, folder / "pki", PROJECT, ["sensor-1"])
    return data_dir, devices


@pytest.fixture(scope="module")
def server(fleet: tuple[Path, list[DeviceFiles]]) -> Iterator[RunningServer]:
    data_dir, _ = fleet
    running = start_server(data_dir, *WORKERS)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def device(fleet: tuple[Path, list[DeviceFiles]]) -> DeviceFiles:
    return fleet[1][0]


def worker_of(server: RunningServer, port: int) -> int | None:
    """Return the index of the worker that completed a handshake from ``port``."""
    pattern = re.compile(rf"worker=(\d+) handshake completed peer=127\.0\.0\.1:{port} ")
    match = pattern.search(server.log())
    return None if match is None else int(match[1])


def connect(server: RunningServer, device: DeviceFiles) -> tuple[DeviceClient, int]:
    """Connect one client and return it with the index of its worker."""
    client = DeviceClient(
        "127.0.0.1", server.port, device.cert, device.key, server.server_ca
    )
    client.connect()
    port = client.channel.local_address[1]
    deadline = time.monotonic() + 5
    while (index := worker_of(server, port)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert index is not None, f"no worker logged the handshake from port {port}"
    return client, index


def clients_on_both_workers(
    server: RunningServer, device: DeviceFiles
) -> tuple[DeviceClient, DeviceClient]:
    """Open clients until one is on worker 0 and one on worker 1."""
    found: dict[int, DeviceClient] = {}
    for _ in range(MAX_CLIENTS):
        client, index = connect(server, device)
        if index in found:
            client.close()
            continue
        found[index] = client
        if len(found) == 2:
            return found[0], found[1]
    raise AssertionError(f"{MAX_CLIENTS} clients all landed on worker {list(found)}")


def observe(client: DeviceClient, path: tuple[str, ...], token: bytes) -> Message:
    """Register an observation and return the response."""
    message = Message(code=Code.GET)
    message.mtype = Type.CON
    message.mid = 0x4242
    message.token = token
    message.opt.uri_path = path
    message.opt.observe = 0
    if path[0] == ".rpc":
        message.opt.accept = CBOR
    client.channel.send(message.encode())
    return receive(client, token)


def receive(client: DeviceClient, token: bytes, timeout: float = 5.0) -> Message:
    """Return the next message with ``token``, acknowledging a confirmable one."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        record = client.channel.receive(remaining)
        if record is None:
            break
        message = Message.decode(record)
        if message.mtype is Type.CON and message.code.is_response():
            ack = Message(code=Code.EMPTY)
            ack.mtype, ack.mid = Type.ACK, message.mid
            client.channel.send(ack.encode())
        if message.token == token:
            return message
    raise AssertionError(f"no message with token {token.hex()} within {timeout} s")


def api_put_state(
    server: RunningServer, device_id: str, path: str, value: object
) -> None:
    assert server.api_url is not None and server.admin_key is not None
    response = httpx.put(
        f"{server.api_url}/v1/projects/{PROJECT}/devices/{device_id}/data/{path}",
        json=value,
        headers={"x-api-key": server.admin_key},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def device_id(server: RunningServer, name: str) -> str:
    assert server.api_url is not None and server.admin_key is not None
    response = httpx.get(
        f"{server.api_url}/v1/projects/{PROJECT}/devices",
        params={"deviceName": name},
        headers={"x-api-key": server.admin_key},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    matching = [item for item in response.json()["list"] if item["name"] == name]
    assert matching, f"no device named {name!r}"
    return str(matching[0]["id"])


def test_workers_serve_clients_on_one_port(
    server: RunningServer, device: DeviceFiles
) -> None:
    seen: set[int] = set()
    outputs = []
    for _ in range(MAX_CLIENTS):
        result = coap_client(server, ".d", cert=device.cert, key=device.key)
        outputs.append(result.output)
        seen = {
            int(index)
            for index in re.findall(r"worker=(\d+) handshake completed", server.log())
        }
        if seen == {0, 1}:
            break
    assert seen == {0, 1}
    assert all(output.strip().startswith("{") for output in outputs), outputs


def test_session_keeps_its_worker(server: RunningServer, device: DeviceFiles) -> None:
    client, index = connect(server, device)
    port = client.channel.local_address[1]
    with contextlib.closing(client):
        for count in range(40):
            posted = client.request(
                "POST", ".d/counter", str(count).encode(), content_format=JSON
            )
            assert posted.code is Code.CHANGED
            read = client.request("GET", ".d/counter")
            assert read.payload == str(count).encode()
    handshakes = re.findall(
        rf"worker=(\d+) handshake completed peer=127\.0\.0\.1:{port} ", server.log()
    )
    assert handshakes == [str(index)]


def test_change_reaches_observer_on_other_worker(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    store = ("--database-url", database_url)
    device = register_fleet(data_dir, tmp_path / "pki", PROJECT, ["sensor-1"], *store)[
        0
    ]
    server = start_server(data_dir, *WORKERS, *store)
    try:
        observer, writer = clients_on_both_workers(server, device)
        token = b"\x0b\x51"
        with contextlib.closing(observer), contextlib.closing(writer):
            first = observe(observer, (".d", "config"), token)
            assert first.code is Code.CONTENT

            assert writer.request(
                "POST", ".d/config", b'{"interval":5}', content_format=JSON
            ).successful
            from_device = receive(observer, token)
            assert from_device.payload == b'{"interval":5}'

            api_put_state(
                server, device_id(server, "sensor-1"), "config", {"interval": 9}
            )
            from_api = receive(observer, token)
            assert from_api.payload == b'{"interval":9}'
    finally:
        status = stop_server(server)
    assert status == 0


def test_rpc_reaches_device_on_any_worker(
    server: RunningServer, device: DeviceFiles
) -> None:
    assert server.api_url is not None and server.admin_key is not None
    url = (
        f"{server.api_url}/v1/projects/{PROJECT}/devices/"
        f"{device_id(server, 'sensor-1')}/rpc"
    )
    # One device per worker: the call must reach both, and each replies.
    for client in clients_on_both_workers(server, device):
        token = b"\x0c\xa1"
        with contextlib.closing(client):
            assert observe(client, (".rpc", ""), token).code is Code.CONTENT
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pending = pool.submit(
                    httpx.post,
                    url,
                    json={"method": "ping", "params": [1], "timeoutSeconds": 5},
                    headers={"x-api-key": server.admin_key},
                    timeout=15,
                )
                call = cbor2.loads(receive(client, token).payload)
                reply = {"id": call["id"], "statusCode": 0, "detail": {"pong": 1}}
                status = client.request(
                    "POST", ".rpc/status", cbor2.dumps(reply), content_format=CBOR
                )
                assert status.code is Code.CHANGED
                response = pending.result(15)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["detail"] == {"pong": 1}


def worker_pids(server: RunningServer) -> dict[int, int]:
    """Return the latest process ID of each worker index, from the log."""
    return {int(m["index"]): int(m["pid"]) for m in STARTED.finditer(server.log())}


def test_killed_worker_restarts(
    fleet: tuple[Path, list[DeviceFiles]], tmp_path: Path
) -> None:
    data_dir, devices = fleet
    running = start_server(data_dir, *WORKERS, "--no-api")
    try:
        killed = worker_pids(running)[1]
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + WAIT_SECONDS
        while worker_pids(running).get(1) == killed and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker_pids(running).get(1) not in (None, killed)
        assert "gateway worker exited, restarting worker=1" in running.log()

        outputs = [
            coap_client(running, ".d", cert=devices[0].cert, key=devices[0].key)
            for _ in range(6)
        ]
        served = [result.output for result in outputs]
        assert all(output.strip().startswith("{") for output in served), served
    finally:
        status = stop_server(running)
    assert status == 0


def test_sigterm_stops_every_worker(fleet: tuple[Path, list[DeviceFiles]]) -> None:
    data_dir, _ = fleet
    running = start_server(data_dir, *WORKERS, "--no-api")
    pids = list(worker_pids(running).values())
    assert len(pids) == 2

    status = stop_server(running)

    assert status == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_api_disable_closes_sessions_on_every_worker(
    server: RunningServer, device: DeviceFiles
) -> None:
    assert server.api_url is not None and server.admin_key is not None
    sensor_id = device_id(server, "sensor-1")
    url = f"{server.api_url}/v1/projects/{PROJECT}/devices/{sensor_id}"
    headers = {"x-api-key": server.admin_key}
    clients = clients_on_both_workers(server, device)
    token = b"\x0d\x01"
    alerts: list[str | None] = []
    try:
        for client in clients:
            assert observe(client, (".d", "sensor"), token).code is Code.CONTENT
        disabled = httpx.patch(
            url, json={"enabled": False}, headers=headers, timeout=10
        )
        assert disabled.status_code == 200, disabled.text
        # Well within the 5 s recheck, so only the API's close can do it.
        for client in clients:
            try:
                client.channel.receive(2.0)
                alerts.append(None)
            except SessionClosed as closed:
                alerts.append(closed.alert)
    finally:
        for client in clients:
            client.close()
        httpx.patch(url, json={"enabled": True}, headers=headers, timeout=10)
    assert alerts == ["close_notify", "close_notify"]
