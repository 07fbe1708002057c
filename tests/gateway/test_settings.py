"""Settings on ``.c``: reads, Observe notifications and status reports.

The device side sends what Golioth's firmware SDK sends: an observing
GET of ``.c`` with Accept CBOR and a CBOR report to ``.c/status``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import cbor2
import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from fastapi.testclient import TestClient

from fleetgate.api.app import create_app
from fleetgate.client import CBOR, DeviceClient
from fleetgate.config import DeviceRateLimits
from fleetgate.store import apikeys, device_logs, devices
from fleetgate.store import settings as settings_store
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project

from .conftest import PROJECT, FleetPki, GatewayFactory, GatewayThread, connect

TOKEN = b"\x5e\x77"


@pytest.fixture
def device(gateway: GatewayThread, pki: FleetPki) -> Iterator[DeviceClient]:
    client = connect(gateway, pki.device("sensor-1"))
    with client:
        assert client.request("GET", ".d").successful
        yield client


@pytest.fixture
def api(database: Database) -> Iterator[TestClient]:
    key = apikeys.create_api_key(database, PROJECT, actor="test")
    app = create_app(database)
    with TestClient(
        app, headers={"x-api-key": key.secret}, raise_server_exceptions=False
    ) as client:
        yield client


def device_id(database: Database) -> str:
    return devices.list_devices(database, PROJECT, exact_name="sensor-1").items[0].id


def observe_settings(device: DeviceClient, *, mid: int) -> Message:
    message = Message(code=Code.GET)
    message.mtype = Type.CON
    message.mid = mid
    message.token = TOKEN
    # The SDK joins ".c/" and an empty name, which ends in an empty segment.
    message.opt.uri_path = (".c", "")
    message.opt.observe = 0
    message.opt.accept = CBOR
    device.channel.send(message.encode())
    return receive(device)


def receive(device: DeviceClient, timeout: float = 3.0) -> Message:
    record = device.channel.receive(timeout)
    assert record is not None, "no CoAP message within the timeout"
    return Message.decode(record)


class TestRead:
    def test_no_settings_reads_empty_map(self, device: DeviceClient) -> None:
        reply = device.request("GET", ".c", accept=CBOR)
        assert reply.code is Code.CONTENT
        assert reply.content_format == CBOR
        assert cbor2.loads(reply.payload) == {"version": 0, "settings": {}}

    def test_device_override_wins(
        self, device: DeviceClient, database: Database
    ) -> None:
        settings_store.replace_project_settings(
            database, PROJECT, {"LOOP_DELAY_S": 10, "UNIT": "celsius"}
        )
        settings_store.replace_device_settings(
            database, PROJECT, device_id(database), {"LOOP_DELAY_S": 5}
        )
        body = cbor2.loads(device.request("GET", ".c", accept=CBOR).payload)
        assert body["settings"] == {"LOOP_DELAY_S": 5, "UNIT": "celsius"}
        assert body["version"] > 0


class TestObserve:
    def test_registration_carries_settings(
        self, gateway: GatewayThread, device: DeviceClient, database: Database
    ) -> None:
        settings_store.replace_project_settings(database, PROJECT, {"ON": True})
        reply = observe_settings(device, mid=1)
        assert reply.code is Code.CONTENT
        assert reply.opt.observe is not None
        assert cbor2.loads(reply.payload)["settings"] == {"ON": True}
        count = gateway.call(lambda: gateway.gateway.endpoint.observers.count)
        assert count == 1

    def test_api_change_is_notified(
        self, device: DeviceClient, api: TestClient, database: Database
    ) -> None:
        first = observe_settings(device, mid=1)
        response = api.put(
            f"/v1/projects/{PROJECT}/settings",
            json={"settings": {"LOOP_DELAY_S": 30}},
        )
        assert response.status_code == 200
        notification = receive(device)
        assert notification.token == TOKEN
        assert notification.opt.observe > first.opt.observe
        body = cbor2.loads(notification.payload)
        assert body["settings"] == {"LOOP_DELAY_S": 30}
        assert body["version"] == response.json()["data"]["version"]

    def test_device_override_is_notified(
        self, device: DeviceClient, api: TestClient, database: Database
    ) -> None:
        observe_settings(device, mid=1)
        response = api.put(
            f"/v1/projects/{PROJECT}/devices/{device_id(database)}/settings",
            json={"settings": {"UNIT": "kelvin"}},
        )
        assert response.status_code == 200
        assert cbor2.loads(receive(device).payload)["settings"] == {"UNIT": "kelvin"}

        response = api.delete(
            f"/v1/projects/{PROJECT}/devices/{device_id(database)}/settings"
        )
        assert response.status_code == 200
        assert cbor2.loads(receive(device).payload)["settings"] == {}

    def test_other_project_change_is_not_notified(
        self, device: DeviceClient, database: Database
    ) -> None:
        observe_settings(device, mid=1)
        create_project(database, "elsewhere")
        settings_store.replace_project_settings(database, "elsewhere", {"X": 1})
        assert device.channel.receive(0.5) is None


class TestStatus:
    def test_report_is_stored_as_log(
        self, device: DeviceClient, database: Database
    ) -> None:
        report = {
            "version": 1652109801583,
            "errors": [{"setting_key": "SPEED", "error_code": 1}],
        }
        reply = device.request(
            "POST", ".c/status", cbor2.dumps(report), content_format=CBOR
        )
        assert reply.code is Code.CHANGED
        entries = device_logs.list_log_entries(
            database, PROJECT, device_id(database)
        ).items
        assert len(entries) == 1
        assert entries[0].module == "settings"
        assert entries[0].level == "warn"
        assert entries[0].metadata == report

    def test_report_must_be_map(self, device: DeviceClient) -> None:
        reply = device.request(
            "POST", ".c/status", cbor2.dumps([1]), content_format=CBOR
        )
        assert reply.code is Code.BAD_REQUEST

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(cbor2.dumps({}), id="fail/no-version"),
            pytest.param(cbor2.dumps({"version": float("inf")}), id="fail/infinity"),
            pytest.param(cbor2.dumps({"version": float("nan")}), id="fail/nan"),
            pytest.param(b'{"version": Infinity}', id="fail/json-infinity"),
            pytest.param(cbor2.dumps({"version": "7"}), id="fail/text-version"),
        ],
    )
    def test_report_needs_integer_version(
        self, device: DeviceClient, database: Database, body: bytes
    ) -> None:
        content_format = None if body.startswith(b"{") else CBOR
        reply = device.request("POST", ".c/status", body, content_format=content_format)
        stored = device_logs.list_log_entries(database, PROJECT, device_id(database))
        assert reply.code is Code.BAD_REQUEST
        assert b"version must be an integer" in reply.payload
        assert stored.total == 0

    def test_flood_is_answered_and_shed(
        self,
        start_gateway: GatewayFactory,
        pki: FleetPki,
        database: Database,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        limits = DeviceRateLimits(status_rate=0.01, status_burst=4)
        gateway = start_gateway(rate_limits=limits)
        body = cbor2.dumps({"version": 7})
        with (
            connect(gateway, pki.device("sensor-1")) as client,
            caplog.at_level(logging.DEBUG, "fleetgate"),
        ):
            codes = {
                client.request("POST", ".c/status", body, content_format=CBOR).code
                for _ in range(10)
            }

        stored = device_logs.list_log_entries(database, PROJECT, device_id(database))
        status_lines = [
            r for r in caplog.records if r.getMessage().startswith("settings status")
        ]
        assert codes == {Code.CHANGED}
        assert stored.total == 4
        assert all(r.levelno == logging.DEBUG for r in status_lines)
        assert any("resource=.c/status" in r.getMessage() for r in caplog.records)

    def test_post_on_settings_not_allowed(self, device: DeviceClient) -> None:
        reply = device.request("POST", ".c", b"{}")
        assert reply.code is Code.METHOD_NOT_ALLOWED
