"""The connectivity probe of Golioth's firmware SDK: an empty-path DELETE."""

from __future__ import annotations

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from .conftest import FleetPki, GatewayThread, connect

PROBE_TOKEN = bytes(8)


def probe(mid: int) -> bytes:
    message = Message(code=Code.DELETE)
    message.mtype = Type.CON
    message.mid = mid
    message.token = PROBE_TOKEN
    return message.encode()


def test_probe_at_session_start_is_deleted(
    gateway: GatewayThread, pki: FleetPki
) -> None:
    with connect(gateway, pki.device("sensor-1")) as device:
        device.channel.send(probe(0x1234))
        record = device.channel.receive(3.0)

    assert record is not None
    reply = Message.decode(record)
    assert reply.mtype is Type.ACK
    assert reply.mid == 0x1234
    assert reply.token == PROBE_TOKEN
    assert reply.code is Code.DELETED


def test_probe_after_requests_is_deleted(gateway: GatewayThread, pki: FleetPki) -> None:
    with connect(gateway, pki.device("sensor-1")) as device:
        assert device.request("GET", ".d").successful
        reply = device.request("DELETE", "")

    assert reply.code is Code.DELETED
    assert reply.payload == b""


def test_probe_leaves_state_alone(gateway: GatewayThread, pki: FleetPki) -> None:
    with connect(gateway, pki.device("sensor-1")) as device:
        assert device.request("PUT", ".d/mode", b'"eco"').successful
        assert device.request("DELETE", "").code is Code.DELETED
        reply = device.request("GET", ".d/mode")

    assert reply.payload == b'"eco"'
