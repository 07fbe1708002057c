"""Device logs and LightDB Stream posted over DTLS, read back from the store."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import cbor2
import pytest
from aiocoap.numbers.codes import Code

from fleetgate.client import CBOR, JSON, TEXT_PLAIN, DeviceClient
from fleetgate.config import DeviceRateLimits
from fleetgate.gateway.ratelimit import DeviceRateLimiter
from fleetgate.store import device_logs, devices, stream
from fleetgate.store.database import Database

from .conftest import PROJECT, FleetPki, GatewayFactory, GatewayThread, connect


@pytest.fixture
def device(gateway: GatewayThread, pki: FleetPki) -> Iterator[DeviceClient]:
    client = connect(gateway, pki.device("sensor-1"))
    with client:
        assert client.request("GET", ".d").successful
        yield client


def device_id(database: Database) -> str:
    record = devices.list_devices(database, PROJECT, exact_name="sensor-1")
    return record.items[0].id


def sdk_log(level: str, module: str, msg: str) -> bytes:
    return cbor2.dumps({"level": level, "module": module, "msg": msg})


class TestLogs:
    @pytest.mark.parametrize("path", ["logs", ".s/logs"])
    def test_cbor_entry_is_stored(
        self, device: DeviceClient, database: Database, path: str
    ) -> None:
        reply = device.request(
            "POST",
            path,
            sdk_log("warn", "golioth_example", "low battery"),
            content_format=CBOR,
        )
        assert reply.code is Code.CHANGED

        entries = device_logs.list_log_entries(
            database, PROJECT, device_id(database)
        ).items
        assert len(entries) == 1
        assert entries[0].level == "warn"
        assert entries[0].module == "golioth_example"
        assert entries[0].message == "low battery"

    def test_json_entry_keeps_extra_fields(
        self, device: DeviceClient, database: Database
    ) -> None:
        body = {"level": "ERROR", "module": "net", "message": "down", "uptime": 5}
        reply = device.request(
            "POST", "logs", json.dumps(body).encode(), content_format=JSON
        )
        assert reply.code is Code.CHANGED

        entry = device_logs.list_log_entries(
            database, PROJECT, device_id(database)
        ).items[0]
        assert entry.level == "error"
        assert entry.message == "down"
        assert entry.metadata == {"uptime": 5}

    def test_text_entry_is_info(self, device: DeviceClient, database: Database) -> None:
        reply = device.request("POST", "logs", b"booted", content_format=TEXT_PLAIN)
        assert reply.code is Code.CHANGED
        entry = device_logs.list_log_entries(
            database, PROJECT, device_id(database)
        ).items[0]
        assert entry.level == "info"
        assert entry.message == "booted"

    def test_non_map_body_is_bad_request(self, device: DeviceClient) -> None:
        reply = device.request("POST", "logs", b"[1,2]", content_format=JSON)
        assert reply.code is Code.BAD_REQUEST

    def test_get_is_not_allowed(self, device: DeviceClient) -> None:
        assert device.request("GET", "logs").code is Code.METHOD_NOT_ALLOWED

    @pytest.mark.parametrize(
        ("level", "stored"),
        [
            pytest.param(1, "error", id="ok/number-error"),
            pytest.param(4, "debug", id="ok/number-debug"),
            pytest.param("Warning", "warn", id="ok/warning-name"),
            pytest.param("none", "none", id="ok/none"),
        ],
    )
    def test_sdk_level_is_stored_by_name(
        self, device: DeviceClient, database: Database, level: object, stored: str
    ) -> None:
        body = cbor2.dumps({"level": level, "module": "app", "msg": "m"})
        reply = device.request("POST", "logs", body, content_format=CBOR)
        assert reply.code is Code.CHANGED
        entry = device_logs.list_log_entries(
            database, PROJECT, device_id(database)
        ).items[0]
        assert entry.level == stored

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            pytest.param(
                {"level": "info", "msg": "m"},
                b"module must be text",
                id="fail/no-module",
            ),
            pytest.param(
                {"level": "info", "module": "app"},
                b"msg must be text",
                id="fail/no-msg",
            ),
            pytest.param(
                {"level": "info", "module": "app", "msg": 5},
                b"msg must be text",
                id="fail/number-msg",
            ),
            pytest.param(
                {"level": "critical", "module": "app", "msg": "m"},
                b"level must be one of none, error, warn, info, debug",
                id="fail/unknown-level",
            ),
            pytest.param(
                {"level": 5, "module": "app", "msg": "m"},
                b"level must be one of",
                id="fail/level-number-out-of-range",
            ),
            pytest.param(
                {"level": True, "module": "app", "msg": "m"},
                b"level must be one of",
                id="fail/boolean-level",
            ),
        ],
    )
    @pytest.mark.parametrize("path", ["logs", ".s/logs"])
    def test_incomplete_entry_is_rejected(
        self,
        device: DeviceClient,
        database: Database,
        path: str,
        body: dict[str, object],
        message: bytes,
    ) -> None:
        reply = device.request("POST", path, cbor2.dumps(body), content_format=CBOR)
        stored = device_logs.list_log_entries(database, PROJECT, device_id(database))
        assert reply.code is Code.BAD_REQUEST
        assert message in reply.payload
        assert stored.total == 0

    @pytest.mark.parametrize("path", ["logs", ".s/logs"])
    def test_trailing_bytes_are_rejected(
        self, device: DeviceClient, database: Database, path: str
    ) -> None:
        body = sdk_log("info", "app", "m") + b"\x00"
        reply = device.request("POST", path, body, content_format=CBOR)
        stored = device_logs.list_log_entries(database, PROJECT, device_id(database))
        assert reply.code is Code.BAD_REQUEST
        assert b"1 bytes follow the CBOR item" in reply.payload
        assert stored.total == 0

    def test_flood_is_answered_and_shed(
        self,
        gateway: GatewayThread,
        device: DeviceClient,
        database: Database,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        slow = DeviceRateLimiter("logs", rate=0.01, burst=5, warn_interval=0.0)
        gateway.call(lambda: setattr(gateway.gateway.logs, "limiter", slow))

        with caplog.at_level(logging.WARNING, "fleetgate.gateway.ratelimit"):
            codes = {
                device.request(
                    "POST",
                    "logs",
                    sdk_log("info", "app", f"n{n}"),
                    content_format=CBOR,
                ).code
                for n in range(12)
            }

        assert codes == {Code.CHANGED}
        stored = device_logs.list_log_entries(database, PROJECT, device_id(database))
        assert stored.total == 5
        assert any("dropped=" in record.getMessage() for record in caplog.records)


class TestStream:
    def test_json_value_at_path(self, device: DeviceClient, database: Database) -> None:
        reply = device.request("POST", ".s/env", b'{"temp":21.5}', content_format=JSON)
        assert reply.code is Code.CHANGED

        record = stream.list_stream_records(
            database, PROJECT, device_id(database)
        ).items[0]
        assert record.path == ("env",)
        assert record.value == {"temp": 21.5}

    def test_cbor_value_at_root(self, device: DeviceClient, database: Database) -> None:
        reply = device.request(
            "POST", ".s", cbor2.dumps({"rssi": -70}), content_format=CBOR
        )
        assert reply.code is Code.CHANGED

        record = stream.list_stream_records(
            database, PROJECT, device_id(database)
        ).items[0]
        assert record.path == ()
        assert record.value == {"rssi": -70}

    def test_each_post_is_a_record(
        self, device: DeviceClient, database: Database
    ) -> None:
        for value in (b"1", b"2", b"3"):
            device.request("POST", ".s/counter", value, content_format=JSON)
        records = stream.list_stream_records(database, PROJECT, device_id(database))
        assert records.total == 3
        assert [record.value for record in records.items] == [3, 2, 1]

    def test_invalid_json_is_bad_request(self, device: DeviceClient) -> None:
        reply = device.request("POST", ".s/x", b"{", content_format=JSON)
        assert reply.code is Code.BAD_REQUEST

    def test_get_is_not_allowed(self, device: DeviceClient) -> None:
        assert device.request("GET", ".s/x").code is Code.METHOD_NOT_ALLOWED

    def test_flood_gets_too_many_requests(
        self,
        start_gateway: GatewayFactory,
        pki: FleetPki,
        database: Database,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        limits = DeviceRateLimits(stream_rate=0.25, stream_burst=3)
        gateway = start_gateway(rate_limits=limits)
        with (
            connect(gateway, pki.device("sensor-1")) as client,
            caplog.at_level(logging.WARNING, "fleetgate.gateway.ratelimit"),
        ):
            replies = [
                client.request("POST", ".s/temp", b"21", content_format=JSON)
                for _ in range(6)
            ]

        records = stream.list_stream_records(database, PROJECT, device_id(database))
        assert [reply.code for reply in replies[:3]] == [Code.CHANGED] * 3
        assert replies[3].code is Code.TOO_MANY_REQUESTS
        assert replies[3].max_age == 4
        assert records.total == 3
        assert any("resource=stream" in r.getMessage() for r in caplog.records)
