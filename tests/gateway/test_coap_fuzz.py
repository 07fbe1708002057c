"""Bounded fuzzing of the CoAP message layer with Hypothesis.

Random bytes and mutated valid requests go straight into a
:class:`DeviceLink` over a fake DTLS session, with the real LightDB
State service behind it. No exception may escape the link, nothing may
be logged at ERROR, and everything the link sends must decode as a
CoAP message. The example count and a per-example deadline keep the
run to a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetgate.gateway.coap import CoapEndpoint, DeviceLink
from fleetgate.gateway.resources import ConnectedDevice, Router
from fleetgate.gateway.services.state import StateService
from fleetgate.gateway.writes import DeviceWriter
from fleetgate.store import devices, projects
from fleetgate.store.database import Database

PROJECT = "fuzz-project"
# How long one example waits for the link to respond to its input.
SETTLE_SECONDS = 1.0


class FakeSession:
    """Records what the link sends instead of encrypting it."""

    def __init__(self) -> None:
        self.address = ("127.0.0.1", 5684)
        self.peer_identity = None  # no verified identity attached
        self.sent: list[bytes] = []
        self.closed = False

    def send(self, payload: bytes) -> None:
        self.sent.append(payload)

    def close(self, *, notify: bool = True) -> None:
        self.closed = True


class ErrorRecords(logging.Handler):
    """Collects ERROR records of the fleetgate loggers."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def device(database: Database) -> ConnectedDevice:
    projects.create_project(database, PROJECT)
    record = devices.create_device(database, PROJECT, "fuzzed", certificate_id="fuzzed")
    return ConnectedDevice(PROJECT, record.id, record.name, "fuzzed")


@pytest.fixture
def errors() -> Iterator[ErrorRecords]:
    handler = ErrorRecords()
    logger = logging.getLogger("fleetgate")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def valid_request(code: Code, mtype: Type, path: str, payload: bytes) -> bytes:
    message = Message(code=code, payload=payload)
    message.mtype = mtype
    message.mid = 0x2345
    message.token = b"\x0a\x0b"
    message.opt.uri_path = tuple(path.split("/"))
    if payload:
        message.opt.content_format = 50
    return message.encode()


valid_requests = st.builds(
    valid_request,
    st.sampled_from([Code.GET, Code.POST, Code.PUT, Code.DELETE]),
    st.sampled_from([Type.CON, Type.NON]),
    st.sampled_from([".d", ".d/a", ".d/a/b", "v1/csr", "nope"]),
    st.sampled_from([b"", b'{"x":1}', b"[1,2]", b"\xa1ax\x01", b"{"]),
)


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    """A valid request with a few bytes overwritten, inserted or cut."""
    data = bytearray(draw(valid_requests))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["set", "insert", "cut"]))
        value = draw(st.integers(0, 255))
        if action == "set" and position < len(data):
            data[position] = value
        elif action == "insert":
            data.insert(position, value)
        else:
            del data[position:]
    return bytes(data)


messages = st.lists(
    st.one_of(st.binary(max_size=300), mutated_requests(), valid_requests),
    min_size=1,
    max_size=6,
)


async def feed(
    device: ConnectedDevice, db: Database, payloads: list[bytes]
) -> FakeSession:
    """Feed ``payloads`` to a fresh link and wait until it has responded to them."""
    writer = DeviceWriter(db)
    writer.start()
    router = Router()
    router.add(".d", StateService(db, writer).handle)

    async def associate(identity: object) -> ConnectedDevice:
        return device

    async def revalidate(identity: object, connected: ConnectedDevice) -> None:
        return None

    endpoint = CoapEndpoint(router, associate, revalidate)
    session = FakeSession()
    link = DeviceLink(endpoint, session)  # type: ignore[arg-type]
    try:
        for payload in payloads:
            link.receive(payload)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_SECONDS
        while loop.time() < deadline and not link.idle:
            await asyncio.sleep(0.005)
        # The link logs at ERROR whatever escapes a request, and the
        # errors fixture collects it.
        assert link.idle
    finally:
        link.close()
        await writer.stop()
    return session


@settings(
    max_examples=150,
    deadline=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(payloads=messages)
def test_coap_input_never_escapes(
    payloads: list[bytes],
    device: ConnectedDevice,
    database: Database,
    errors: ErrorRecords,
) -> None:
    session = asyncio.run(feed(device, database, payloads))

    for sent in session.sent:
        decoded = Message.decode(sent)
        assert decoded.mtype in (Type.ACK, Type.NON, Type.RST)
    assert errors.messages == []
