"""The event channel and change relay between ``fleetgate serve`` and its workers."""

from __future__ import annotations

import asyncio

from fleetgate.gateway.channel import (
    LOCAL,
    Answer,
    ChangeRelay,
    EventChannel,
    Message,
    channel_pair,
)
from fleetgate.gateway.services.rpc import DeviceNotConnected, RpcTimedOut
from fleetgate.gateway.workers import _rpc_error
from fleetgate.store.changes import state_changes

Forwarded = tuple[str, str, tuple[str, ...], int]


def test_relay_forwards_local_change() -> None:
    forwarded: list[Forwarded] = []
    relay = ChangeRelay(lambda *change: forwarded.append(change))
    relay.start()
    try:
        state_changes.publish("device-1", ("config",))
    finally:
        relay.stop()
    assert forwarded == [("state", "device-1", ("config",), LOCAL)]


def test_replayed_change_keeps_its_origin() -> None:
    forwarded: list[Forwarded] = []
    heard: list[tuple[str, tuple[str, ...]]] = []
    relay = ChangeRelay(lambda *change: forwarded.append(change))
    unsubscribe = state_changes.subscribe(lambda *change: heard.append(change))
    relay.start()
    try:
        relay.replay("state", "device-1", ("config",), origin=3)
    finally:
        relay.stop()
        unsubscribe()
    assert heard == [("device-1", ("config",))]
    assert forwarded == [("state", "device-1", ("config",), 3)]


def test_stopped_relay_forwards_nothing() -> None:
    forwarded: list[Forwarded] = []
    relay = ChangeRelay(lambda *change: forwarded.append(change))
    relay.start()
    relay.stop()
    state_changes.publish("device-1", ())
    assert forwarded == []


def test_channel_delivers_in_order() -> None:
    async def exchange() -> list[Message]:
        parent_end, child_end = channel_pair()
        sender = EventChannel(parent_end, "parent")
        receiver = EventChannel(child_end, "child")
        received: list[Message] = []
        sender.start(lambda message: None)
        receiver.start(received.append)
        for number in range(200):
            sender.post(("change", "state", f"device-{number}", ("a",)))
        for _ in range(200):
            if len(received) == 200:
                break
            await asyncio.sleep(0.01)
        await sender.close()
        await receiver.close()
        return received

    received = asyncio.run(exchange())
    assert [message[2] for message in received] == [
        f"device-{number}" for number in range(200)
    ]


def test_channel_notices_closed_peer() -> None:
    async def close_peer() -> bool:
        parent_end, child_end = channel_pair()
        channel = EventChannel(parent_end, "parent")
        channel.start(lambda message: None)
        child_end.close()
        await asyncio.wait_for(channel.closed.wait(), 5)
        await channel.close()
        return channel.closed.is_set()

    assert asyncio.run(close_peer())


def test_rpc_timeout_outranks_not_connected() -> None:
    error = _rpc_error(
        "device-1",
        [
            Answer(error_kind="not_connected", message="elsewhere"),
            Answer(error_kind="timed_out", message="no reply"),
        ],
    )
    assert isinstance(error, RpcTimedOut)


def test_rpc_stopped_worker_is_not_connected() -> None:
    error = _rpc_error(
        "device-1",
        [Answer(error_kind="worker_stopped", message="worker 1 stopped")],
    )
    assert isinstance(error, DeviceNotConnected)
    assert error.message == "worker 1 stopped"


def test_rpc_nowhere_names_the_device() -> None:
    error = _rpc_error("device-1", [Answer(error_kind="not_connected")] * 2)
    assert isinstance(error, DeviceNotConnected)
    assert "device-1" in error.message
