"""SharedNotification: one encoding of a response, spliced per observer."""

from __future__ import annotations

import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption

from fleetgate.gateway.notifications import SharedNotification
from fleetgate.gateway.resources import JSON, CoapResponse, response_message

RESPONSES = {
    "ok/plain": CoapResponse(Code.CONTENT, b'{"on":true}', JSON),
    "ok/empty-body": CoapResponse(Code.CONTENT),
    "ok/max-age": CoapResponse(Code.CONTENT, b"1", JSON, max_age=30),
    "ok/block2-etag-size2": CoapResponse(
        Code.CONTENT,
        b"x" * 1024,
        JSON,
        etag=b"\x01\x02\x03\x04\x05\x06\x07\x08",
        block2=BlockOption.BlockwiseTuple(0, True, 6),
        size2=2500,
    ),
}
# Observe values of every encoded length: 0, 1, 2 and 3 bytes.
SEQUENCES = [0, 1, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFF]


def reference(
    response: CoapResponse, mtype: Type, mid: int, token: bytes, observe: int
) -> bytes:
    message = response_message(response)
    message.opt.observe = observe
    message.mtype = mtype
    message.mid = mid
    message.token = token
    encoded: bytes = message.encode()
    return encoded


@pytest.mark.parametrize("response", RESPONSES.values(), ids=RESPONSES.keys())
@pytest.mark.parametrize("observe", SEQUENCES)
@pytest.mark.parametrize("mtype", [Type.NON, Type.CON])
@pytest.mark.parametrize("token", [b"", b"\x0b", b"12345678"])
def test_encoding_matches_aiocoap(
    response: CoapResponse, observe: int, mtype: Type, token: bytes
) -> None:
    shared = SharedNotification(response)
    encoded = shared.encode(mtype=mtype, mid=0xBEEF, token=token, observe=observe)
    assert encoded == reference(response, mtype, 0xBEEF, token, observe)


def test_encoding_decodes_to_observer_fields() -> None:
    shared = SharedNotification(RESPONSES["ok/block2-etag-size2"])
    decoded = Message.decode(
        shared.encode(mtype=Type.NON, mid=7, token=b"tk", observe=0x123456)
    )
    assert decoded.mid == 7
    assert decoded.token == b"tk"
    assert decoded.opt.observe == 0x123456
    assert decoded.opt.block2 == (0, True, 6)
    assert decoded.opt.size2 == 2500


def test_long_token_is_rejected() -> None:
    shared = SharedNotification(RESPONSES["ok/plain"])
    with pytest.raises(ValueError, match="9 bytes"):
        shared.encode(mtype=Type.NON, mid=1, token=b"x" * 9, observe=1)
