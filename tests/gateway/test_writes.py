"""The device writer: batched device writes on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from sqlalchemy import bindparam, insert
from sqlalchemy.exc import IntegrityError

from fleetgate.client import JSON
from fleetgate.errors import InvalidInput, NotFound, StoreUnavailable, WriteQueueFull
from fleetgate.gateway.coap import CoapEndpoint, DeviceLink
from fleetgate.gateway.resources import ConnectedDevice, Router
from fleetgate.gateway.services.state import StateService
from fleetgate.gateway.writes import QUEUE_FULL_RETRY_SECONDS, DeviceWriter
from fleetgate.store import devices, projects
from fleetgate.store import state as state_store
from fleetgate.store.batch import BatchTransaction
from fleetgate.store.changes import state_changes
from fleetgate.store.database import Database, PreparedStatement
from fleetgate.store.models import DeviceState, utcnow

from .conftest import PROJECT, FleetPki, GatewayThread, connect

# Bounds every wait for the writer thread, in seconds.
WAIT_SECONDS = 10.0
ORPHAN_STATE = PreparedStatement(
    insert(DeviceState).values(
        device_id=bindparam("device_id"),
        document=bindparam("document", type_=DeviceState.document.type),
        revision=1,
        updated_at=bindparam("updated_at", type_=DeviceState.updated_at.type),
    )
)


@pytest.fixture
def device_ids(database: Database) -> list[str]:
    projects.create_project(database, "writes")
    return [devices.create_device(database, "writes", f"pump-{i}").id for i in range(4)]


def set_write(
    device_id: str, path: tuple[str, ...], value: Any
) -> Callable[[BatchTransaction], int]:
    return functools.partial(
        state_store.set_state_in, device_id=device_id, path=path, value=value
    )


class Blocker:
    """A write that holds the writer thread until released, to fill the queue."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, transaction: BatchTransaction) -> None:
        self.entered.set()
        assert self.release.wait(WAIT_SECONDS)


async def block(
    writer: DeviceWriter, device_id: str
) -> tuple[Blocker, asyncio.Task[None]]:
    """Queue a blocking write and return once the writer thread runs it."""
    blocker = Blocker()
    task = asyncio.ensure_future(writer.apply(device_id, blocker))
    entered = await asyncio.to_thread(blocker.entered.wait, WAIT_SECONDS)
    assert entered
    return blocker, task


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 4 * WAIT_SECONDS))


def test_concurrent_devices_lose_no_write(
    database: Database, device_ids: list[str]
) -> None:
    async def scenario() -> None:
        writer = DeviceWriter(database)
        writer.start()

        async def post(device_id: str, count: int) -> None:
            for index in range(count):
                await writer.apply(
                    device_id, set_write(device_id, ("k", str(index)), index)
                )

        try:
            # Two writers per device: each device's document is edited by
            # two coroutines at once, whose writes share batches.
            await asyncio.gather(
                *(post(device_id, 25) for device_id in device_ids),
                *(post(device_id, 25) for device_id in device_ids),
            )
        finally:
            await writer.stop()

    run(scenario())

    for device_id in device_ids:
        document = state_store.get_state(database, device_id, ("k",))
        assert document == {str(index): index for index in range(25)}


def test_api_and_device_writes_interleave(
    database: Database, device_ids: list[str]
) -> None:
    device_id = device_ids[0]
    count = 30

    def api_writes() -> None:
        for index in range(count):
            state_store.set_state(database, device_id, ("api", str(index)), index)

    async def scenario() -> None:
        writer = DeviceWriter(database)
        writer.start()
        try:
            api = asyncio.to_thread(api_writes)
            device = asyncio.gather(
                *(
                    writer.apply(device_id, set_write(device_id, ("dev", str(i)), i))
                    for i in range(count)
                )
            )
            await asyncio.gather(api, device)
        finally:
            await writer.stop()

    run(scenario())

    document = state_store.get_state(database, device_id)
    assert document["api"] == {str(index): index for index in range(count)}
    assert document["dev"] == {str(index): index for index in range(count)}
    # Every write got its own revision, so none overwrote another.
    assert state_store.set_state(database, device_id, ("end",), 1) == 2 * count + 1


def test_failed_write_fails_alone(database: Database, device_ids: list[str]) -> None:
    first, second, deleted = device_ids[:3]
    transactions: list[int] = []

    def recorded(write: Callable[[BatchTransaction], Any]) -> Callable[..., Any]:
        def wrapper(transaction: BatchTransaction) -> Any:
            transactions.append(id(transaction))
            return write(transaction)

        return wrapper

    def broken_sql(transaction: BatchTransaction) -> None:
        # A foreign key violation: PostgreSQL then refuses every statement
        # of the transaction until it rolls back to the savepoint.
        transaction.execute(
            ORPHAN_STATE,
            {"device_id": "no-such-device", "document": {}, "updated_at": utcnow()},
        )

    def half_done(transaction: BatchTransaction) -> None:
        # Fails after it wrote, so only its savepoint can undo the write.
        state_store.set_state_in(transaction, first, ("partial",), 1)
        raise InvalidInput("cannot finish the write")

    async def scenario() -> list[Any]:
        writer = DeviceWriter(database)
        writer.start()
        try:
            # Deleted before the batch, which would make a SQLite delete
            # wait for the write lock that the blocked batch holds.
            devices.delete_device(database, "writes", deleted)
            blocker, blocked = await block(writer, first)
            writes = [
                (first, set_write(first, ("ok",), 1)),
                (first, half_done),
                (first, broken_sql),
                (second, set_write(second, ("bad",), float("nan"))),
                (deleted, set_write(deleted, ("gone",), 1)),
                (second, set_write(second, ("ok",), 2)),
            ]
            queued = [
                asyncio.ensure_future(writer.apply(device_id, recorded(write)))
                for device_id, write in writes
            ]
            await asyncio.sleep(0)
            blocker.release.set()
            await blocked
            return await asyncio.gather(*queued, return_exceptions=True)
        finally:
            await writer.stop()

    results = run(scenario())

    assert len(set(transactions)) == 1
    assert results[0] == 1
    assert isinstance(results[1], InvalidInput)
    assert isinstance(results[2], IntegrityError)
    assert isinstance(results[3], InvalidInput)
    assert "the value is not JSON" in results[3].message
    assert isinstance(results[4], NotFound)
    assert results[5] == 1
    assert state_store.get_state(database, first) == {"ok": 1}
    assert state_store.get_state(database, second) == {"ok": 2}


def test_full_queue_raises_write_queue_full(
    database: Database, device_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    device_id = device_ids[0]

    async def scenario() -> tuple[BaseException | None, int]:
        writer = DeviceWriter(database, max_queued=1)
        writer.start()
        try:
            blocker, blocked = await block(writer, device_id)
            waiting = asyncio.ensure_future(
                writer.apply(device_id, set_write(device_id, ("a",), 1))
            )
            await asyncio.sleep(0)
            refused: BaseException | None = None
            try:
                await writer.apply(device_id, set_write(device_id, ("b",), 2))
            except WriteQueueFull as exc:
                refused = exc
            blocker.release.set()
            await blocked
            return refused, await waiting
        finally:
            await writer.stop()

    with caplog.at_level(logging.WARNING, logger="fleetgate.gateway.writes"):
        refused, revision = run(scenario())

    assert isinstance(refused, WriteQueueFull)
    assert refused.retry_after == QUEUE_FULL_RETRY_SECONDS
    assert revision == 1
    assert state_store.get_state(database, device_id) == {"a": 1}
    assert any("write queue is full" in line for line in caplog.messages)


class FakeSession:
    """Records what a link sends instead of encrypting it."""

    def __init__(self) -> None:
        self.address = ("127.0.0.1", 5684)
        self.peer_identity = None
        self.sent: list[bytes] = []

    def send(self, payload: bytes) -> None:
        self.sent.append(payload)

    def close(self, *, notify: bool = True) -> None:
        pass


def test_full_queue_answers_503_with_max_age(
    database: Database, device_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    device = ConnectedDevice(
        project_id="writes",
        device_id=device_ids[0],
        device_name="pump-0",
        certificate_id="pump-0",
    )

    async def scenario() -> Message:
        writer = DeviceWriter(database, max_queued=1)
        writer.start()
        router = Router()
        router.add(".d", StateService(database, writer).handle)

        async def associate(identity: object) -> ConnectedDevice:
            return device

        async def revalidate(identity: object, connected: ConnectedDevice) -> None:
            return None

        session = FakeSession()
        link = DeviceLink(CoapEndpoint(router, associate, revalidate), session)  # type: ignore[arg-type]
        try:
            blocker, blocked = await block(writer, device.device_id)
            waiting = asyncio.ensure_future(
                writer.apply(device.device_id, set_write(device.device_id, ("a",), 1))
            )
            await asyncio.sleep(0)
            request = Message(code=Code.POST, payload=b"5")
            request.mtype = Type.CON
            request.mid = 7
            request.token = b"\x01"
            request.opt.uri_path = (".d", "b")
            request.opt.content_format = JSON
            link.receive(request.encode())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT_SECONDS
            while not session.sent and loop.time() < deadline:
                await asyncio.sleep(0.01)
            blocker.release.set()
            await asyncio.gather(blocked, waiting)
            return Message.decode(session.sent[0])
        finally:
            link.close()
            await writer.stop()

    with caplog.at_level(logging.INFO, logger="fleetgate"):
        reply = run(scenario())

    assert reply.code is Code.SERVICE_UNAVAILABLE
    assert reply.opt.max_age == QUEUE_FULL_RETRY_SECONDS
    refusals = [line for line in caplog.messages if "device request refused" in line]
    assert any("reason=write_queue_full" in line for line in refusals)


def test_stop_applies_queued_writes(database: Database, device_ids: list[str]) -> None:
    device_id = device_ids[0]

    async def scenario() -> tuple[list[int], BaseException | None]:
        writer = DeviceWriter(database)
        writer.start()
        blocker, blocked = await block(writer, device_id)
        queued = [
            asyncio.ensure_future(
                writer.apply(device_id, set_write(device_id, ("k", str(i)), i))
            )
            for i in range(5)
        ]
        await asyncio.sleep(0)
        stopping = asyncio.ensure_future(writer.stop())
        await asyncio.sleep(0.05)
        blocker.release.set()
        await stopping
        await blocked
        results = await asyncio.gather(*queued)
        late: BaseException | None = None
        try:
            await writer.apply(device_id, set_write(device_id, ("late",), 1))
        except StoreUnavailable as exc:
            late = exc
        return results, late

    results, late = run(scenario())

    assert results == [1, 2, 3, 4, 5]
    assert state_store.get_state(database, device_id, ("k",)) == {
        str(i): i for i in range(5)
    }
    assert isinstance(late, StoreUnavailable)


def test_change_published_after_commit(
    database: Database, device_ids: list[str]
) -> None:
    device_id = device_ids[0]
    seen: list[Any] = []

    def listener(changed: str, path: tuple[str, ...]) -> None:
        # Reads on another connection: the value is there only once the
        # writer's transaction is committed.
        if changed == device_id:
            seen.append(state_store.get_state(database, device_id, path))

    async def scenario() -> None:
        writer = DeviceWriter(database)
        writer.start()
        try:
            await writer.apply(device_id, set_write(device_id, ("mode",), "eco"))
        finally:
            await writer.stop()

    unsubscribe = state_changes.subscribe(listener)
    try:
        run(scenario())
    finally:
        unsubscribe()

    assert seen == ["eco"]


def test_devices_over_dtls_lose_no_write(
    gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    names = [f"sensor-{i}" for i in range(4)]
    count = 15

    def post_all(name: str) -> None:
        with connect(gateway, pki.device(name)) as client:
            for index in range(count):
                reply = client.request(
                    "POST", f".d/k/{index}", str(index).encode(), content_format=JSON
                )
                assert reply.code is Code.CHANGED

    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        for future in [pool.submit(post_all, name) for name in names]:
            future.result(timeout=60)

    for name in names:
        record = devices.list_devices(database, PROJECT, exact_name=name).items[0]
        document = state_store.get_state(database, record.id, ("k",))
        assert document == {str(index): index for index in range(count)}


def test_write_queued_at_stop_gets_response(
    gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    with connect(gateway, pki.device("sensor-0")) as client:
        client.request("POST", ".d/a", b"0", content_format=JSON)
        record = devices.list_devices(database, PROJECT, exact_name="sensor-0").items[0]
        writer = gateway.gateway.writer
        blocker = Blocker()
        gateway.call(lambda: asyncio.ensure_future(writer.apply(record.id, blocker)))
        assert blocker.entered.wait(WAIT_SECONDS)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            posting = pool.submit(
                client.request, "POST", ".d/b", b"1", content_format=JSON
            )
            deadline = time.monotonic() + WAIT_SECONDS
            while gateway.call(lambda: writer.pending) < 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            stopping = asyncio.run_coroutine_threadsafe(
                gateway.gateway.stop(), gateway.loop
            )
            # Let the stop begin while the write still waits in the queue.
            time.sleep(0.05)
            blocker.release.set()
            stopping.result(timeout=WAIT_SECONDS)
            reply = posting.result(timeout=WAIT_SECONDS)

    assert reply.code is Code.CHANGED
    assert state_store.get_state(database, record.id, ("b",)) == 1
