"""Block-wise transfer (RFC 7959): Block2 responses and Block1 request bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption

from fleetgate.client import JSON, DeviceClient
from fleetgate.gateway.blockwise import BlockwiseTransfers
from fleetgate.gateway.resources import CoapResponse
from fleetgate.store import devices
from fleetgate.store import state as state_store
from fleetgate.store.database import Database

from .conftest import PROJECT, FleetPki, GatewayThread, connect

Block = BlockOption.BlockwiseTuple
BIG_VALUE = "v" * 3000  # 3002 bytes as JSON: three blocks of 1024


def message(
    code: Code,
    path: tuple[str, ...],
    *,
    mid: int,
    payload: bytes = b"",
    block1: Block | None = None,
    block2: Block | None = None,
) -> Message:
    built = Message(code=code, payload=payload)
    built.mtype = Type.CON
    built.mid = mid
    built.token = b"\x42"
    built.opt.uri_path = path
    if block1 is not None:
        built.opt.block1 = block1
        built.opt.content_format = JSON
    if block2 is not None:
        built.opt.block2 = block2
    return built


class TestBlockwiseTransfers:
    def test_small_response_is_unchanged(self) -> None:
        request = message(Code.GET, (".d",), mid=1)
        response = CoapResponse(Code.CONTENT, b"x" * 1024)
        assert BlockwiseTransfers().finish(request, response) == response

    def test_large_response_gets_block_0(self) -> None:
        request = message(Code.GET, (".d",), mid=1)
        sliced = BlockwiseTransfers().finish(
            request, CoapResponse(Code.CONTENT, b"x" * 2500)
        )
        assert sliced.block2 == Block(0, True, 6)
        assert len(sliced.payload) == 1024
        assert sliced.size2 == 2500
        assert sliced.etag is not None

    def test_requested_smaller_block(self) -> None:
        request = message(Code.GET, (".d",), mid=1, block2=Block(2, False, 4))
        body = bytes(range(256)) * 4
        sliced = BlockwiseTransfers().finish(request, CoapResponse(Code.CONTENT, body))
        assert sliced.payload == body[512:768]
        assert sliced.block2 == Block(2, True, 4)
        assert sliced.size2 is None

    def test_block_past_end_is_bad_option(self) -> None:
        request = message(Code.GET, (".d",), mid=1, block2=Block(5, False, 6))
        sliced = BlockwiseTransfers().finish(
            request, CoapResponse(Code.CONTENT, b"x" * 2000)
        )
        assert sliced.code is Code.BAD_OPTION

    def test_error_response_is_not_sliced(self) -> None:
        request = message(Code.GET, (".d",), mid=1, block2=Block(5, False, 6))
        error = CoapResponse.diagnostic(Code.NOT_FOUND, "cannot find state /x")
        assert BlockwiseTransfers().finish(request, error) == error

    def test_out_of_order_block_is_incomplete(self) -> None:
        transfers = BlockwiseTransfers()
        request = message(
            Code.PUT, (".d", "a"), mid=1, payload=b"x" * 16, block1=Block(1, True, 0)
        )
        answer = transfers.reassemble(request)
        assert isinstance(answer, CoapResponse)
        assert answer.code is Code.REQUEST_ENTITY_INCOMPLETE

    def test_body_over_limit_is_4_13(self) -> None:
        transfers = BlockwiseTransfers(max_body=32)
        for number in range(2):
            block = message(
                Code.PUT,
                (".d", "a"),
                mid=number,
                payload=b"x" * 16,
                block1=Block(number, True, 0),
            )
            assert isinstance(transfers.reassemble(block), CoapResponse)
        third = message(
            Code.PUT, (".d", "a"), mid=3, payload=b"x", block1=Block(2, False, 0)
        )
        answer = transfers.reassemble(third)
        assert isinstance(answer, CoapResponse)
        assert answer.code is Code.REQUEST_ENTITY_TOO_LARGE
        assert answer.size1 == 32
        assert transfers.buffered_bytes == 0

    def test_short_block_with_more_is_bad_request(self) -> None:
        request = message(
            Code.PUT, (".d", "a"), mid=1, payload=b"x" * 10, block1=Block(0, True, 0)
        )
        answer = BlockwiseTransfers().reassemble(request)
        assert isinstance(answer, CoapResponse)
        assert answer.code is Code.BAD_REQUEST

    def test_transfers_per_session_are_bounded(self) -> None:
        transfers = BlockwiseTransfers()
        for number in range(10):
            transfers.reassemble(
                message(
                    Code.PUT,
                    (".d", f"k{number}"),
                    mid=number,
                    payload=b"x" * 16,
                    block1=Block(0, True, 0),
                )
            )
        assert transfers.buffered_bytes == 4 * 16


@pytest.fixture
def device(gateway: GatewayThread, pki: FleetPki) -> Iterator[DeviceClient]:
    client = connect(gateway, pki.device("sensor-1"))
    with client:
        assert client.request("GET", ".d").successful
        yield client


def exchange(device: DeviceClient, request: Message) -> Message:
    device.channel.send(request.encode())
    record = device.channel.receive(3.0)
    assert record is not None, "no response within the timeout"
    return Message.decode(record)


class TestOverDtls:
    def test_block2_download_of_large_value(
        self, device: DeviceClient, database: Database
    ) -> None:
        identifier = (
            devices.list_devices(database, PROJECT, exact_name="sensor-1").items[0].id
        )
        state_store.set_state(database, identifier, ("big",), BIG_VALUE)

        body = b""
        for number in range(10):
            reply = exchange(
                device,
                message(
                    Code.GET,
                    (".d", "big"),
                    mid=100 + number,
                    block2=Block(number, False, 6),
                ),
            )
            assert reply.code is Code.CONTENT
            body += reply.payload
            if not reply.opt.block2.more:
                break
        assert number == 2
        assert json.loads(body) == BIG_VALUE

    def test_block1_upload_then_read_back(self, device: DeviceClient) -> None:
        body = json.dumps(BIG_VALUE).encode()
        blocks = [body[start : start + 1024] for start in range(0, len(body), 1024)]
        codes = []
        for number, chunk in enumerate(blocks):
            more = number < len(blocks) - 1
            reply = exchange(
                device,
                message(
                    Code.PUT,
                    (".d", "big"),
                    mid=200 + number,
                    payload=chunk,
                    block1=Block(number, more, 6),
                ),
            )
            codes.append(reply.code)
            assert reply.opt.block1.block_number == number
        assert codes == [Code.CONTINUE, Code.CONTINUE, Code.CHANGED]

        first = exchange(device, message(Code.GET, (".d", "big"), mid=300))
        assert first.opt.block2 == Block(0, True, 6)
        assert first.opt.size2 == len(body)

    def test_block1_stream_post(self, device: DeviceClient) -> None:
        body = json.dumps({"samples": list(range(600))}).encode()
        blocks = [body[start : start + 512] for start in range(0, len(body), 512)]
        last = None
        for number, chunk in enumerate(blocks):
            more = number < len(blocks) - 1
            last = exchange(
                device,
                message(
                    Code.POST,
                    (".s", "batch"),
                    mid=400 + number,
                    payload=chunk,
                    block1=Block(number, more, 5),
                ),
            )
        assert last is not None
        assert last.code is Code.CHANGED
