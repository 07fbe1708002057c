"""Observe (RFC 7641) on LightDB State: registration, notifications, cancellation.

Messages are built by hand so that a test controls tokens, types and the
Observe option, and sees every notification the gateway sends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import cbor2
import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from fleetgate.client import CBOR, JSON, DeviceClient
from fleetgate.client.errors import SessionClosed
from fleetgate.gateway import coap
from fleetgate.store import devices
from fleetgate.store import settings as settings_store
from fleetgate.store import state as state_store
from fleetgate.store.database import Database

from .conftest import PROJECT, FleetPki, GatewayThread, connect

TOKEN = b"\x0b\x5e"


@pytest.fixture
def device(gateway: GatewayThread, pki: FleetPki) -> Iterator[DeviceClient]:
    client = connect(gateway, pki.device("sensor-1"))
    with client:
        assert client.request("GET", ".d").successful
        yield client


def device_id(database: Database) -> str:
    return devices.list_devices(database, PROJECT, exact_name="sensor-1").items[0].id


def observe(
    device: DeviceClient,
    path: str,
    *,
    mid: int,
    token: bytes = TOKEN,
    value: int = 0,
) -> Message:
    message = Message(code=Code.GET)
    message.mtype = Type.CON
    message.mid = mid
    message.token = token
    message.opt.uri_path = tuple(path.split("/"))
    message.opt.observe = value
    message.opt.accept = JSON
    device.channel.send(message.encode())
    return receive(device)


def receive(device: DeviceClient, timeout: float = 3.0) -> Message:
    record = device.channel.receive(timeout)
    assert record is not None, "no CoAP message within the timeout"
    return Message.decode(record)


def receive_nothing(device: DeviceClient, wait: float = 0.5) -> bool:
    return device.channel.receive(wait) is None


def reply_empty(device: DeviceClient, mtype: Type, mid: int) -> None:
    message = Message(code=Code.EMPTY)
    message.mtype = mtype
    message.mid = mid
    device.channel.send(message.encode())


def registrations(gateway: GatewayThread) -> int:
    return gateway.call(lambda: gateway.gateway.endpoint.observers.count)


class TestRegistration:
    def test_missing_value_registers_with_null(
        self, gateway: GatewayThread, device: DeviceClient
    ) -> None:
        reply = observe(device, ".d/desired/my_config", mid=1)
        assert reply.code is Code.CONTENT
        assert reply.mtype is Type.ACK
        assert reply.token == TOKEN
        assert reply.opt.observe is not None
        assert reply.payload == b"null"
        assert registrations(gateway) == 1

    def test_plain_get_does_not_register(
        self, gateway: GatewayThread, device: DeviceClient
    ) -> None:
        device.request("GET", ".d")
        assert registrations(gateway) == 0

    def test_unobservable_path_gets_plain_response(
        self, gateway: GatewayThread, device: DeviceClient
    ) -> None:
        reply = observe(device, "v1/csr", mid=1)
        assert reply.opt.observe is None
        assert registrations(gateway) == 0

    def test_same_token_registers_once(
        self, gateway: GatewayThread, device: DeviceClient, database: Database
    ) -> None:
        observe(device, ".d/mode", mid=1)
        observe(device, ".d/mode", mid=2)
        assert registrations(gateway) == 1

        state_store.set_state(database, device_id(database), ("mode",), "eco")
        assert json.loads(receive(device).payload) == "eco"
        assert receive_nothing(device)


class TestNotifications:
    def test_api_change_is_notified(
        self, device: DeviceClient, database: Database
    ) -> None:
        first = observe(device, ".d/desired/my_config", mid=1)
        state_store.set_state(
            database, device_id(database), ("desired", "my_config"), 7
        )
        notification = receive(device)

        assert notification.code is Code.CONTENT
        assert notification.mtype is Type.NON
        assert notification.token == TOKEN
        assert notification.payload == b"7"
        assert notification.opt.content_format == JSON
        assert notification.opt.observe > first.opt.observe

    def test_sequence_numbers_increase(
        self, device: DeviceClient, database: Database
    ) -> None:
        observe(device, ".d/count", mid=1)
        identifier = device_id(database)
        seen = []
        for value in range(3):
            state_store.set_state(database, identifier, ("count",), value)
            notification = receive(device)
            seen.append(notification.opt.observe)
            assert json.loads(notification.payload) == value
        assert seen == sorted(seen)
        assert len(set(seen)) == 3

    def test_shared_rendering_follows_each_change(
        self,
        device: DeviceClient,
        gateway: GatewayThread,
        pki: FleetPki,
        database: Database,
    ) -> None:
        second = connect(gateway, pki.device("sensor-1"))
        with second:
            observe(device, ".d/level", mid=1)
            observe(device, ".d/level", mid=2, token=b"\x0b\x5f")
            observe(second, ".d/level", mid=1)
            identifier = device_id(database)
            for value in range(3):
                state_store.set_state(database, identifier, ("level",), value)
                payloads = [receive(device).payload, receive(device).payload]
                payloads.append(receive(second).payload)
                assert payloads == [str(value).encode()] * 3

    def test_coap_write_is_notified(self, device: DeviceClient) -> None:
        observe(device, ".d/desired", mid=1)
        # The write's own response and the notification may come in
        # either order, so both are read raw.
        write = Message(code=Code.PUT, payload=b'{"my_config":3}')
        write.mtype = Type.CON
        write.mid = 2
        write.token = b"\x01"
        write.opt.uri_path = (".d", "desired")
        write.opt.content_format = JSON
        device.channel.send(write.encode())
        messages = [receive(device), receive(device)]

        notification = next(m for m in messages if m.token == TOKEN)
        assert json.loads(notification.payload) == {"my_config": 3}
        assert any(m.code is Code.CHANGED for m in messages)

    def test_parent_change_is_notified(
        self, device: DeviceClient, database: Database
    ) -> None:
        observe(device, ".d/desired/my_config", mid=1)
        state_store.set_state(database, device_id(database), (), {"desired": {}})
        assert receive(device).payload == b"null"

    def test_sibling_change_is_not_notified(
        self, device: DeviceClient, database: Database
    ) -> None:
        observe(device, ".d/desired/my_config", mid=1)
        state_store.set_state(database, device_id(database), ("desired", "x"), 1)
        assert receive_nothing(device)

    def test_deletion_notifies_null(
        self, device: DeviceClient, database: Database
    ) -> None:
        identifier = device_id(database)
        state_store.set_state(database, identifier, ("mode",), "eco")
        observe(device, ".d/mode", mid=1)
        state_store.delete_state(database, identifier, ("mode",))
        notification = receive(device)
        assert notification.code is Code.CONTENT
        assert notification.payload == b"null"

    def test_confirmable_notification_is_retransmitted(
        self, gateway: GatewayThread, device: DeviceClient, database: Database
    ) -> None:
        def confirm_all() -> None:
            observers = gateway.gateway.endpoint.observers
            observers.con_interval = 0.0
            observers.ack_timeout = 0.1
            observers.max_retransmit = 2

        gateway.call(confirm_all)
        observe(device, ".d/mode", mid=1)
        state_store.set_state(database, device_id(database), ("mode",), "eco")

        first = receive(device)
        again = receive(device)
        assert first.mtype is Type.CON
        assert again.mid == first.mid
        reply_empty(device, Type.ACK, first.mid)
        late = device.channel.receive(0.6)
        assert late is None, Message.decode(late)
        assert registrations(gateway) == 1

    def test_unacknowledged_notification_removes_observation(
        self, gateway: GatewayThread, device: DeviceClient, database: Database
    ) -> None:
        def confirm_all() -> None:
            observers = gateway.gateway.endpoint.observers
            observers.con_interval = 0.0
            observers.ack_timeout = 0.05
            observers.max_retransmit = 1

        gateway.call(confirm_all)
        observe(device, ".d/mode", mid=1)
        state_store.set_state(database, device_id(database), ("mode",), "eco")

        transmissions = [receive(device), receive(device)]
        assert {m.mid for m in transmissions} == {transmissions[0].mid}
        assert receive_nothing(device, 0.5)
        assert registrations(gateway) == 0


class TestCancellation:
    def test_observe_1_cancels(
        self, gateway: GatewayThread, device: DeviceClient, database: Database
    ) -> None:
        observe(device, ".d/mode", mid=1)
        reply = observe(device, ".d/mode", mid=2, value=1)
        assert reply.code is Code.CONTENT
        assert reply.opt.observe is None
        assert registrations(gateway) == 0

        state_store.set_state(database, device_id(database), ("mode",), "eco")
        assert receive_nothing(device)

    def test_reset_to_notification_cancels(
        self, gateway: GatewayThread, device: DeviceClient, database: Database
    ) -> None:
        identifier = device_id(database)
        observe(device, ".d/mode", mid=1)
        state_store.set_state(database, identifier, ("mode",), "eco")
        notification = receive(device)
        reply_empty(device, Type.RST, notification.mid)
        assert receive_nothing(device, 0.3)

        state_store.set_state(database, identifier, ("mode",), "max")
        assert receive_nothing(device)
        assert registrations(gateway) == 0

    def test_session_close_forgets_observations(
        self, gateway: GatewayThread, pki: FleetPki
    ) -> None:
        with connect(gateway, pki.device("sensor-2")) as device:
            assert device.request("GET", ".d").successful
            observe(device, ".d/a", mid=1, token=b"a")
            observe(device, ".d/b", mid=2, token=b"b")
            assert registrations(gateway) == 2

        # The gateway learns of the close_notify asynchronously.
        deadline = time.monotonic() + 3.0
        while registrations(gateway) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert registrations(gateway) == 0


def observe_with(
    device: DeviceClient,
    path: str,
    *,
    mid: int,
    token: bytes,
    accept: int,
    block2: tuple[int, bool, int] | None = None,
) -> Message:
    message = Message(code=Code.GET)
    message.mtype = Type.CON
    message.mid = mid
    message.token = token
    message.opt.uri_path = tuple(path.split("/"))
    message.opt.observe = 0
    message.opt.accept = accept
    if block2 is not None:
        message.opt.block2 = block2
    device.channel.send(message.encode())
    return receive(device)


def receive_all(device: DeviceClient, wait: float = 0.5) -> list[Message]:
    """Return every message that arrives until none came for ``wait`` seconds."""
    received = []
    for _ in range(100):
        record = device.channel.receive(wait)
        if record is None:
            break
        received.append(Message.decode(record))
    return received


class TestFanOut:
    def test_change_reaches_each_observer_once_per_format(
        self,
        device: DeviceClient,
        gateway: GatewayThread,
        pki: FleetPki,
        database: Database,
    ) -> None:
        second = connect(gateway, pki.device("sensor-1"))
        with second:
            for client in (device, second):
                observe_with(client, ".d/level", mid=1, token=b"j", accept=JSON)
                observe_with(client, ".d/level", mid=2, token=b"c", accept=CBOR)
            state_store.set_state(
                database, device_id(database), ("level",), {"on": True}
            )
            arrived = [
                (client_index, message)
                for client_index, client in enumerate((device, second))
                for message in receive_all(client)
            ]

        tokens = sorted((index, message.token) for index, message in arrived)
        assert tokens == [(0, b"c"), (0, b"j"), (1, b"c"), (1, b"j")]
        for _, message in arrived:
            if message.token == b"j":
                assert message.opt.content_format == JSON
                assert json.loads(message.payload) == {"on": True}
            else:
                assert message.opt.content_format == CBOR
                assert cbor2.loads(message.payload) == {"on": True}

    def test_sequence_numbers_increase_per_observation(
        self, device: DeviceClient, database: Database
    ) -> None:
        observe_with(device, ".d/count", mid=1, token=b"j", accept=JSON)
        observe_with(device, ".d/count", mid=2, token=b"c", accept=CBOR)
        identifier = device_id(database)
        sequences: dict[bytes, list[int]] = {b"j": [], b"c": []}
        for value in range(3):
            state_store.set_state(database, identifier, ("count",), value)
            for _ in range(2):
                notification = receive(device)
                sequences[notification.token].append(notification.opt.observe)

        for token, seen in sequences.items():
            assert len(seen) == 3, token
            assert seen == sorted(set(seen)), token

    def test_reset_cancels_only_its_observation(
        self, gateway: GatewayThread, device: DeviceClient, database: Database
    ) -> None:
        identifier = device_id(database)
        observe_with(device, ".d/mode", mid=1, token=b"a", accept=JSON)
        observe_with(device, ".d/mode", mid=2, token=b"b", accept=JSON)
        state_store.set_state(database, identifier, ("mode",), "eco")
        first = {message.token: message for message in receive_all(device)}
        reply_empty(device, Type.RST, first[b"b"].mid)
        assert receive_nothing(device, 0.3)

        state_store.set_state(database, identifier, ("mode",), "max")
        after = receive_all(device)

        assert [message.token for message in after] == [b"a"]
        assert after[0].payload == b'"max"'
        assert registrations(gateway) == 1

    def test_disabled_device_gets_none_while_others_do(
        self,
        gateway: GatewayThread,
        pki: FleetPki,
        database: Database,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(coap, "REVALIDATE_SECONDS", 0.2)
        monkeypatch.setattr(coap, "RECHECK_SWEEPS_PER_INTERVAL", 0.001)
        enabled = connect(gateway, pki.device("sensor-1"))
        disabled = connect(gateway, pki.device("sensor-2"))
        with enabled, disabled:
            for client in (enabled, disabled):
                assert client.request("GET", ".d").successful
                for index in range(3):
                    token = bytes([index])
                    observe_with(client, ".c/", mid=9 + index, token=token, accept=CBOR)
            (sensor_2,) = devices.list_devices(
                database, PROJECT, exact_name="sensor-2"
            ).items
            devices.set_device_enabled(database, PROJECT, sensor_2.id, False)
            time.sleep(0.5)
            settings_store.replace_project_settings(database, PROJECT, {"UNIT": "K"})

            notified = receive_all(enabled)
            with pytest.raises(SessionClosed):
                receive_all(disabled, 2.0)

        assert sorted(message.token for message in notified) == [b"\0", b"\1", b"\2"]

    def test_large_value_is_notified_block_wise(
        self, device: DeviceClient, database: Database
    ) -> None:
        identifier = device_id(database)
        state_store.set_state(database, identifier, ("blob",), "a")
        observe_with(device, ".d/blob", mid=1, token=b"w", accept=JSON)
        observe_with(
            device, ".d/blob", mid=2, token=b"s", accept=JSON, block2=(0, False, 2)
        )
        value = "x" * 2500
        state_store.set_state(database, identifier, ("blob",), value)
        notified = {message.token: message for message in receive_all(device)}
        whole = json.dumps(value).encode()

        wide, small = notified[b"w"], notified[b"s"]
        assert wide.opt.block2 == (0, True, 6)
        assert wide.opt.size2 == len(whole)
        assert wide.payload == whole[:1024]
        assert small.opt.block2 == (0, True, 2)
        assert small.payload == whole[:64]
        assert small.opt.etag == wide.opt.etag

        body = bytearray(wide.payload)
        for number in range(1, 3):
            reply = device.request(
                "GET", ".d/blob", accept=JSON, block2=(number, False, 6)
            )
            body.extend(reply.payload)
        assert bytes(body) == whole
