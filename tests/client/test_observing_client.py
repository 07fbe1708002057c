"""The observing client: the SDK's probe, notifications and their acknowledgements."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from fleetgate.client import JSON
from fleetgate.client.observing import PROBE_TOKEN, ObservingClient
from gateway.conftest import FAST_TRANSMISSION, FleetPki, GatewayThread
from gateway.peers import UdpRelay


def observing_client(
    gateway: GatewayThread, pki: FleetPki, port: int
) -> ObservingClient:
    assert gateway.identity.root_path is not None
    files = pki.device("sensor-1")
    return ObservingClient(
        "127.0.0.1",
        port,
        files.cert,
        files.key,
        gateway.identity.root_path,
        timeout=3.0,
        transmission=FAST_TRANSMISSION,
    )


@pytest.fixture
def relay(gateway: GatewayThread) -> Iterator[UdpRelay]:
    running = UdpRelay(gateway.port)
    yield running
    running.close()


@pytest.fixture
def device(
    gateway: GatewayThread, pki: FleetPki, relay: UdpRelay
) -> Iterator[ObservingClient]:
    with observing_client(gateway, pki, relay.port) as client:
        yield client


def record_sent(device: ObservingClient) -> list[Message]:
    """Decode each CoAP message the device sends from now on into the list."""
    sent: list[Message] = []
    send = device.channel.send

    def send_and_record(payload: bytes) -> None:
        sent.append(Message.decode(payload))
        send(payload)

    device.channel.send = send_and_record  # type: ignore[method-assign]
    return sent


class TestProbe:
    def test_probe_is_answered(self, device: ObservingClient) -> None:
        assert device.probe() >= 0

    def test_probe_is_empty_confirmable_delete(self, device: ObservingClient) -> None:
        sent = record_sent(device)
        device.probe()
        assert len(sent) == 1
        assert sent[0].code is Code.DELETE
        assert sent[0].mtype is Type.CON
        assert sent[0].token == PROBE_TOKEN
        assert tuple(sent[0].opt.uri_path) == ()


class TestObserve:
    def test_registration_returns_value(self, device: ObservingClient) -> None:
        assert device.request("PUT", ".d/mode", b'"eco"', content_format=JSON)
        reply = device.observe(".d/mode", accept=JSON)
        assert reply.code is Code.CONTENT
        assert json.loads(reply.payload) == "eco"
        assert device.observed_paths == [".d/mode"]

    def test_change_is_notified_between_requests(self, device: ObservingClient) -> None:
        device.observe(".d/mode", accept=JSON)
        device.request("PUT", ".d/mode", b'"boost"', content_format=JSON)
        notifications = device.wait(3.0)
        assert [n.path for n in notifications] == [".d/mode"]
        assert json.loads(notifications[0].payload) == "boost"

    def test_notification_before_next_request_is_kept(
        self, device: ObservingClient
    ) -> None:
        device.observe(".d/mode", accept=JSON)
        device.request("PUT", ".d/mode", b'"boost"', content_format=JSON)
        # The notification is read while this GET is sent or awaited.
        device.request("GET", ".d/mode")
        taken = device.take_notifications() or device.wait(3.0)
        assert len(taken) == 1
        assert json.loads(taken[0].payload) == "boost"

    def test_unknown_path_is_not_observed(self, device: ObservingClient) -> None:
        reply = device.observe(".nothing", accept=JSON)
        assert reply.code is Code.NOT_FOUND
        assert device.observed_paths == []

    def test_confirmable_notification_is_acknowledged_once(
        self, device: ObservingClient, relay: UdpRelay
    ) -> None:
        device.observe(".d/mode", accept=JSON)
        token = next(iter(device._observed))
        for _ in range(2):  # the second copy is a retransmission
            message = Message(code=Code.CONTENT, payload=b'"eco"')
            message.mtype = Type.CON
            message.mid = 0x4242
            message.token = token
            message.opt.observe = 7
            device._reject_unexpected(message)
        assert len(device.take_notifications()) == 1
        assert list(device._acknowledged).count(0x4242) == 1
