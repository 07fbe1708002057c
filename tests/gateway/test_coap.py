"""The CoAP layer over an established session: message layer and LightDB State.

Raw messages are encoded with aiocoap and sent as DTLS records through
the client's channel, so a test controls message IDs, types and options
exactly. ``counter`` adds a route whose handler counts its calls, which
shows whether a duplicate was processed again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterator

import cbor2
import pytest
from aiocoap import optiontypes
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.numbers.types import Type

from fleetgate import metrics
from fleetgate.client import CBOR, JSON, OCTET_STREAM, DeviceClient
from fleetgate.gateway.resources import CoapRequest, CoapResponse

from .conftest import FleetPki, GatewayThread, connect
from .peers import UdpRelay, drop_first_application_data, is_application_data


@dataclasses.dataclass
class Counter:
    """A route handler that counts its calls and returns the count."""

    calls: int = 0
    delay: float = 0.0

    async def handle(self, request: CoapRequest) -> CoapResponse:
        self.calls += 1
        call = self.calls
        if self.delay:
            await asyncio.sleep(self.delay)
        return CoapResponse(Code.CHANGED, str(call).encode(), 0)


@pytest.fixture
def counter(gateway: GatewayThread) -> Counter:
    """A ``count`` route on the gateway."""
    handler = Counter()
    gateway.call(lambda: gateway.gateway.router.add("count", handler.handle))
    return handler


@pytest.fixture
def device(gateway: GatewayThread, pki: FleetPki) -> Iterator[DeviceClient]:
    """A connected device whose first request has finished association."""
    client = connect(gateway, pki.device("sensor-1"))
    with client:
        assert client.request("GET", ".d").code.dotted == "2.05"
        yield client


def request(
    code: Code,
    path: tuple[str, ...],
    *,
    mid: int,
    mtype: Type = Type.CON,
    token: bytes = b"\x07",
    payload: bytes = b"",
) -> Message:
    message = Message(code=code, payload=payload)
    message.mtype = mtype
    message.mid = mid
    message.token = token
    message.opt.uri_path = path
    return message


def send(device: DeviceClient, message: Message | bytes) -> None:
    encoded = message if isinstance(message, bytes) else message.encode()
    device.channel.send(encoded)


def receive_record(device: DeviceClient, timeout: float = 2.0) -> bytes:
    record = device.channel.receive(timeout)
    assert record is not None, "no CoAP message within the timeout"
    return record


def receive(device: DeviceClient, timeout: float = 2.0) -> Message:
    return Message.decode(receive_record(device, timeout))


def reset_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith("device message reset")
    ]


def receive_nothing(device: DeviceClient, wait: float = 0.5) -> bool:
    return device.channel.receive(wait) is None


class TestDeduplication:
    def test_duplicate_gets_cached_response(
        self, device: DeviceClient, counter: Counter
    ) -> None:
        message = request(Code.POST, ("count",), mid=0x1111)

        send(device, message)
        first = receive_record(device)
        send(device, message)
        second = receive_record(device)

        response = Message.decode(first)
        assert response.mtype is Type.ACK
        assert response.mid == 0x1111
        assert response.payload == b"1"
        assert second == first
        assert counter.calls == 1

    def test_duplicate_in_progress_answered_once(
        self, device: DeviceClient, counter: Counter
    ) -> None:
        counter.delay = 0.3
        message = request(Code.POST, ("count",), mid=0x2222)

        send(device, message)
        send(device, message)
        response = receive(device)

        assert response.payload == b"1"
        assert receive_nothing(device)
        assert counter.calls == 1

    def test_new_message_id_is_processed(
        self, device: DeviceClient, counter: Counter
    ) -> None:
        send(device, request(Code.POST, ("count",), mid=0x3333))
        receive(device)
        send(device, request(Code.POST, ("count",), mid=0x3334))

        assert receive(device).payload == b"2"
        assert counter.calls == 2


class TestMessageLayer:
    def test_empty_confirmable_gets_reset(self, device: DeviceClient) -> None:
        empty = Message(code=Code.EMPTY)
        empty.mtype = Type.CON
        empty.mid = 0x4444
        empty.token = b""

        send(device, empty)
        reset = receive(device)

        assert reset.mtype is Type.RST
        assert reset.mid == 0x4444
        assert reset.code is Code.EMPTY

    def test_ping_returns_round_trip(self, device: DeviceClient) -> None:
        assert 0 < device.ping() < 2.0

    def test_unknown_critical_option_is_4_02(self, device: DeviceClient) -> None:
        message = request(Code.GET, (".d",), mid=0x5555)
        message.opt.add_option(optiontypes.OpaqueOption(OptionNumber(2049), b"x"))

        send(device, message)
        response = receive(device)

        assert response.code is Code.BAD_OPTION
        assert response.mtype is Type.ACK
        assert b"2049" in response.payload

    def test_unknown_elective_option_is_ignored(self, device: DeviceClient) -> None:
        message = request(Code.GET, (".d",), mid=0x5556)
        message.opt.add_option(optiontypes.OpaqueOption(OptionNumber(2048), b"x"))

        send(device, message)

        assert receive(device).code is Code.CONTENT

    @pytest.mark.parametrize(
        "encoded",
        [
            pytest.param(bytes([0x40, 0x01, 0x66, 0x66, 0xF0]), id="reserved-delta"),
            pytest.param(bytes([0x40, 0x01, 0x66, 0x66, 0xB5, 0x61]), id="truncated"),
            pytest.param(
                bytes([0x40, 0x01, 0x66, 0x66, 0xB2, 0xFF, 0xFE]),
                id="path-not-utf8",
            ),
            pytest.param(
                bytes([0x49, 0x01, 0x66, 0x66]) + b"123456789", id="token-length-9"
            ),
            pytest.param(
                bytes([0x4F, 0x01, 0x66, 0x66]) + b"x" * 15, id="token-length-15"
            ),
            pytest.param(bytes([0x44, 0x01, 0x66, 0x66, 0x01]), id="token-cut-short"),
            pytest.param(bytes([0x40, 0x01, 0x66, 0x66, 0xD1]), id="delta-cut-short"),
            pytest.param(
                bytes([0x40, 0x01, 0x66, 0x66, 0xBF, 0x61]), id="reserved-length"
            ),
        ],
    )
    def test_malformed_confirmable_gets_reset(
        self,
        device: DeviceClient,
        encoded: bytes,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        send(device, encoded)
        reset = receive(device)

        assert reset.mtype is Type.RST
        assert reset.mid == 0x6666
        assert device.request("GET", ".d").code is Code.CONTENT
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    def test_malformed_reset_is_logged_with_reason(
        self, device: DeviceClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="fleetgate.gateway.refusals")
        send(device, bytes([0x40, 0x01, 0x66, 0x66, 0xD1]))
        receive(device)

        lines = reset_lines(caplog)
        assert len(lines) == 1
        assert "reason=malformed_message" in lines[0]

    def test_non_request_reset_is_logged_with_code(
        self, device: DeviceClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="fleetgate.gateway.refusals")
        send(device, bytes([0x41, int(Code.CONTENT), 0x66, 0x69, 0x74, 0xB2]) + b".d")
        receive(device)

        lines = reset_lines(caplog)
        assert len(lines) == 1
        assert "reason=not_a_request" in lines[0]
        assert "code 2.05" in lines[0]

    def test_empty_payload_after_marker_is_served(self, device: DeviceClient) -> None:
        # aiocoap reads the marker with nothing after it as no payload.
        send(device, request(Code.GET, (".d",), mid=0x6668).encode() + b"\xff")

        response = receive(device)

        assert response.code is Code.CONTENT
        assert response.mid == 0x6668

    @pytest.mark.parametrize(
        "code",
        [
            pytest.param(0x21, id="reserved-class-1"),
            pytest.param(0xC1, id="reserved-class-6"),
            pytest.param(0xFF, id="reserved-class-7"),
            pytest.param(int(Code.CONTENT), id="response-code"),
        ],
    )
    def test_confirmable_non_request_gets_reset(
        self, device: DeviceClient, code: int
    ) -> None:
        send(device, bytes([0x41, code, 0x66, 0x69, 0x74, 0xB2]) + b".d")
        reset = receive(device)

        assert reset.mtype is Type.RST
        assert reset.mid == 0x6669

    def test_non_confirmable_non_request_is_ignored(self, device: DeviceClient) -> None:
        send(device, bytes([0x51, 0x21, 0x66, 0x6A, 0x74, 0xB2]) + b".d")

        assert receive_nothing(device)

    def test_malformed_non_confirmable_is_ignored(self, device: DeviceClient) -> None:
        send(device, bytes([0x50, 0x01, 0x66, 0x67, 0xF0]))

        assert receive_nothing(device)
        assert device.request("GET", ".d").code is Code.CONTENT

    def test_non_request_gets_non_response(self, device: DeviceClient) -> None:
        message = request(Code.GET, (".d",), mid=0x7777, mtype=Type.NON, token=b"nn")

        send(device, message)
        response = receive(device)

        assert response.mtype is Type.NON
        assert response.token == b"nn"
        assert response.code is Code.CONTENT

    def test_client_non_request_gets_response(self, device: DeviceClient) -> None:
        reply = device.request("GET", ".d", confirmable=False)

        assert reply.code is Code.CONTENT


class TestLoss:
    @pytest.fixture
    def relay(self, gateway: GatewayThread) -> Iterator[UdpRelay]:
        relay = UdpRelay(gateway.port)
        yield relay
        relay.close()

    def test_lost_request_is_retransmitted(
        self,
        gateway: GatewayThread,
        pki: FleetPki,
        relay: UdpRelay,
        counter: Counter,
    ) -> None:
        with connect(gateway, pki.device("sensor-1"), port=relay.port) as client:
            relay.drop_to_server = drop_first_application_data()
            reply = client.request("POST", "count")

        assert reply.payload == b"1"
        assert counter.calls == 1

    def test_lost_response_is_resent_from_cache(
        self,
        gateway: GatewayThread,
        pki: FleetPki,
        relay: UdpRelay,
        counter: Counter,
    ) -> None:
        with connect(gateway, pki.device("sensor-1"), port=relay.port) as client:
            received_before = len(relay.to_client)
            relay.drop_to_client = drop_first_application_data()
            reply = client.request("POST", "count")

        assert reply.payload == b"1"
        assert counter.calls == 1
        responses = relay.to_client[received_before:]
        assert len([d for d in responses if is_application_data(d)]) == 2


class TestLightDbState:
    def test_json_body_reads_back_as_json(self, device: DeviceClient) -> None:
        body = json.dumps({"temp": 21.5, "unit": "C"}).encode()

        written = device.request("POST", ".d/sensor", body, content_format=JSON)
        read = device.request("GET", ".d/sensor")

        assert written.code is Code.CHANGED
        assert read.code is Code.CONTENT
        assert read.content_format == JSON
        assert json.loads(read.payload) == {"temp": 21.5, "unit": "C"}

    def test_cbor_body_reads_back_as_cbor(self, device: DeviceClient) -> None:
        body = cbor2.dumps({"rssi": -71, "ok": True, "tags": ["a", "b"]})

        written = device.request("PUT", ".d/radio", body, content_format=CBOR)
        read = device.request("GET", ".d/radio", accept=CBOR)

        assert written.code is Code.CHANGED
        assert read.content_format == CBOR
        assert cbor2.loads(read.payload) == {
            "rssi": -71,
            "ok": True,
            "tags": ["a", "b"],
        }

    def test_json_body_reads_back_as_cbor(self, device: DeviceClient) -> None:
        device.request("POST", ".d/config", b'{"interval":30}', content_format=JSON)

        read = device.request("GET", ".d", accept=CBOR)

        assert cbor2.loads(read.payload) == {"config": {"interval": 30}}

    def test_invalid_json_is_bad_request(self, device: DeviceClient) -> None:
        reply = device.request("POST", ".d/x", b"{not json", content_format=JSON)

        assert reply.code is Code.BAD_REQUEST
        assert b"invalid JSON" in reply.payload

    def test_unsupported_content_format_is_415(self, device: DeviceClient) -> None:
        reply = device.request("POST", ".d/x", b"\x00\x01", content_format=OCTET_STREAM)

        assert reply.code is Code.UNSUPPORTED_CONTENT_FORMAT

    def test_unsupported_accept_is_406(self, device: DeviceClient) -> None:
        reply = device.request("GET", ".d", accept=OCTET_STREAM)

        assert reply.code is Code.NOT_ACCEPTABLE

    @pytest.mark.parametrize(
        "path",
        [
            pytest.param(".x/anything", id="unknown-service"),
            pytest.param("", id="empty-path"),
            pytest.param(".d/missing/key", id="missing-state"),
        ],
    )
    def test_unknown_path_is_not_found(self, device: DeviceClient, path: str) -> None:
        assert device.request("GET", path).code is Code.NOT_FOUND

    def test_large_document_is_sent_block_wise(self, device: DeviceClient) -> None:
        # Each value fits one message, but the whole document does not,
        # so it comes as block 0 of a Block2 transfer (RFC 7959 2.4).
        value = json.dumps("x" * 9000).encode()
        device.request("PUT", ".d/a", value, content_format=JSON)
        device.request("PUT", ".d/b", value, content_format=JSON)

        whole = device.request("GET", ".d")

        assert whole.code is Code.CONTENT
        assert len(whole.payload) == 1024

    def test_delete_of_missing_path_is_deleted(self, device: DeviceClient) -> None:
        reply = device.request("DELETE", ".d/never/written")

        assert reply.code is Code.DELETED

    def test_delete_removes_value(self, device: DeviceClient) -> None:
        device.request("PUT", ".d/a", b'{"b":1,"c":2}', content_format=JSON)

        device.request("DELETE", ".d/a/b")

        assert json.loads(device.request("GET", ".d/a").payload) == {"c": 2}


def request_seconds_count(resource: str, method: str, code_class: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "fleetgate_coap_request_duration_seconds_count",
        {"resource": resource, "method": method, "code_class": code_class},
    )
    return value or 0.0


class TestRequestMetrics:
    def test_each_request_counts_in_its_series(
        self, gateway: GatewayThread, device: DeviceClient
    ) -> None:
        series = [
            (".d", "GET", "2.xx"),
            ("unknown", "GET", "4.xx"),
            (".d", "PUT", "2.xx"),
        ]
        # A request is measured right after its response is sent: a call
        # on the event loop returns once the last one was measured.
        gateway.call(lambda: None)
        before = [request_seconds_count(*labels) for labels in series]

        for _ in range(2):
            assert device.request("GET", ".d").code.dotted == "2.05"
        assert device.request("GET", "no-such-resource").code.dotted == "4.04"
        assert device.request("PUT", ".d/x", b"1", content_format=JSON).code.dotted == (
            "2.04"
        )
        gateway.call(lambda: None)

        after = [request_seconds_count(*labels) for labels in series]
        assert after[0] - before[0] == 2
        assert after[1] - before[1] == 1
        assert after[2] - before[2] == 1

    def test_device_path_creates_no_series(
        self, gateway: GatewayThread, device: DeviceClient
    ) -> None:
        assert device.request("GET", "made-up-name").code.dotted == "4.04"
        gateway.call(lambda: None)

        resources = {
            sample.labels["resource"]
            for family in metrics.REGISTRY.collect()
            if family.name == "fleetgate_coap_request_duration_seconds"
            for sample in family.samples
        }
        assert "made-up-name" not in resources
