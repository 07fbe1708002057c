"""RPC over ``.rpc``: a call through the API and an observing device's reply.

The device side sends what Golioth's firmware SDK sends: an observing
GET of ``.rpc`` with Accept CBOR, then a CBOR reply to ``.rpc/status``.
The API runs in-process with the gateway's RPC service, as under
``fleetgate serve``.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import cbor2
import httpx
import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from fastapi.testclient import TestClient

from fleetgate.api.app import create_app
from fleetgate.client import CBOR, DeviceClient
from fleetgate.store import apikeys, devices
from fleetgate.store.database import Database

from .conftest import PROJECT, FleetPki, GatewayThread, connect

TOKEN = b"\x0c\xa1"
# Bounds each wait for the API call running in a helper thread.
CALL_WAIT_SECONDS = 10.0


@pytest.fixture
def device(gateway: GatewayThread, pki: FleetPki) -> Iterator[DeviceClient]:
    client = connect(gateway, pki.device("sensor-1"))
    with client:
        assert client.request("GET", ".d").successful
        yield client


@pytest.fixture
def api(database: Database, gateway: GatewayThread) -> Iterator[TestClient]:
    key = apikeys.create_api_key(database, PROJECT, actor="test")
    app = create_app(database, rpc_call=gateway.gateway.rpc.call)
    with TestClient(
        app, headers={"x-api-key": key.secret}, raise_server_exceptions=False
    ) as client:
        yield client


def rpc_path(database: Database) -> str:
    device = devices.list_devices(database, PROJECT, exact_name="sensor-1").items[0]
    return f"/v1/projects/{PROJECT}/devices/{device.id}/rpc"


def observe_rpc(device: DeviceClient) -> Message:
    message = Message(code=Code.GET)
    message.mtype = Type.CON
    message.mid = 1
    message.token = TOKEN
    # The SDK joins ".rpc/" and an empty name, which ends in an empty segment.
    message.opt.uri_path = (".rpc", "")
    message.opt.observe = 0
    message.opt.accept = CBOR
    device.channel.send(message.encode())
    return receive(device)


def receive(device: DeviceClient, timeout: float = 10.0) -> Message:
    record = device.channel.receive(timeout)
    assert record is not None, "no CoAP message within the timeout"
    return Message.decode(record)


def post_call(
    pool: concurrent.futures.ThreadPoolExecutor,
    api: TestClient,
    path: str,
    body: dict[str, Any],
) -> concurrent.futures.Future[httpx.Response]:
    return pool.submit(api.post, path, json=body)


def reply(device: DeviceClient, body: dict[str, Any]) -> Code:
    response = device.request(
        "POST", ".rpc/status", cbor2.dumps(body), content_format=CBOR
    )
    return response.code


def test_registration_gets_ok(gateway: GatewayThread, device: DeviceClient) -> None:
    response = observe_rpc(device)
    assert response.code is Code.CONTENT
    assert response.opt.observe is not None
    assert cbor2.loads(response.payload) == "OK"


def test_call_returns_device_reply(
    device: DeviceClient, api: TestClient, database: Database
) -> None:
    first = observe_rpc(device)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = post_call(
            pool,
            api,
            rpc_path(database),
            {"method": "multiply", "params": [3, 4], "timeoutSeconds": 20},
        )
        notification = receive(device)
        assert notification.token == TOKEN
        assert notification.opt.observe > first.opt.observe
        assert notification.opt.content_format == CBOR
        call = cbor2.loads(notification.payload)
        assert call["method"] == "multiply"
        assert call["params"] == [3, 4]

        status = reply(
            device, {"id": call["id"], "statusCode": 0, "detail": {"value": 12}}
        )
        assert status is Code.CHANGED
        response = pending.result(CALL_WAIT_SECONDS)

    assert response.status_code == 200
    assert response.json() == {
        "data": {"id": call["id"], "statusCode": 0, "detail": {"value": 12}}
    }


def test_silent_device_times_out(
    device: DeviceClient, api: TestClient, database: Database
) -> None:
    observe_rpc(device)
    response = api.post(
        rpc_path(database), json={"method": "reboot", "timeoutSeconds": 0.3}
    )
    assert response.status_code == 504
    assert response.json()["code"] == "rpc_timed_out"

    call = cbor2.loads(receive(device).payload)
    assert call["method"] == "reboot"
    assert call["params"] == []
    # A reply after the timeout is still acknowledged.
    assert reply(device, {"id": call["id"], "statusCode": 0}) is Code.CHANGED


def test_device_not_observing_is_409(
    device: DeviceClient, api: TestClient, database: Database
) -> None:
    response = api.post(rpc_path(database), json={"method": "reboot"})
    assert response.status_code == 409
    assert response.json()["code"] == "device_not_connected"


def test_unknown_device_is_404(device: DeviceClient, api: TestClient) -> None:
    path = f"/v1/projects/{PROJECT}/devices/000000000000000000000000/rpc"
    assert api.post(path, json={"method": "reboot"}).status_code == 404


def test_api_without_gateway_is_409(device: DeviceClient, database: Database) -> None:
    key = apikeys.create_api_key(database, PROJECT, actor="test")
    app = create_app(database)
    with TestClient(app, headers={"x-api-key": key.secret}) as client:
        response = client.post(rpc_path(database), json={"method": "reboot"})
    assert response.status_code == 409
    assert response.json()["code"] == "device_not_connected"


@pytest.mark.parametrize(
    "body",
    [
        {"params": []},
        {"method": ""},
        {"method": "reboot", "params": {"a": 1}},
        {"method": "reboot", "timeoutSeconds": 0},
        {"method": "reboot", "timeoutSeconds": 301},
    ],
)
def test_invalid_call_is_rejected(
    device: DeviceClient, api: TestClient, database: Database, body: dict[str, Any]
) -> None:
    response = api.post(rpc_path(database), json=body)
    assert response.status_code == 422


def test_reply_without_id_is_400(device: DeviceClient) -> None:
    assert reply(device, {"statusCode": 0}) is Code.BAD_REQUEST


def test_call_is_audited(
    device: DeviceClient, api: TestClient, database: Database
) -> None:
    api.post(rpc_path(database), json={"method": "reboot"})
    entries = api.get(f"/v1/projects/{PROJECT}/audit").json()["list"]
    assert entries[0]["action"] == "device.rpc"
    assert entries[0]["details"] == {"method": "reboot"}
