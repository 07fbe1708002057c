"""The gateway's CoAP response encoding, checked against aiocoap's."""

from __future__ import annotations

import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption

from fleetgate.gateway.codec import encode_response
from fleetgate.gateway.resources import CoapResponse, response_message

Block = BlockOption.BlockwiseTuple

RESPONSES = [
    pytest.param(CoapResponse(Code.CHANGED), id="empty"),
    pytest.param(CoapResponse(Code.CONTENT, b'{"n":1}', 50), id="json-body"),
    pytest.param(CoapResponse(Code.CONTENT, b"", 0), id="format-zero-no-body"),
    pytest.param(
        CoapResponse.diagnostic(Code.NOT_FOUND, "no resource at /x"), id="diagnostic"
    ),
    pytest.param(
        CoapResponse(Code.SERVICE_UNAVAILABLE, b"retry", 0, max_age=30),
        id="max-age",
    ),
    pytest.param(
        CoapResponse(Code.CONTENT, b"v", 60, observe=0x123456, etag=b"\x01\x02"),
        id="observe-etag",
    ),
    pytest.param(
        CoapResponse(
            Code.CONTENT,
            b"x" * 1024,
            42,
            block2=Block(70000, True, 6),
            size2=1 << 20,
        ),
        id="block2-size2",
    ),
    pytest.param(
        CoapResponse(
            Code.CONTINUE, block1=Block(3, 1, 2), size1=1 << 16, etag=b"e" * 8
        ),
        id="block1-size1",
    ),
    pytest.param(
        CoapResponse(Code.CONTENT, b"x" * 300, 65535, max_age=1 << 31),
        id="two-byte-format",
    ),
    pytest.param(CoapResponse(Code.CONTENT, etag=b"e" * 20, observe=0), id="long-etag"),
]


class TestEncodeResponse:
    @pytest.mark.parametrize("response", RESPONSES)
    @pytest.mark.parametrize(
        ("mtype", "token"),
        [(Type.ACK, b""), (Type.NON, b"\x07"), (Type.CON, b"12345678")],
        ids=["ack-no-token", "non-one-byte", "con-eight-bytes"],
    )
    def test_matches_aiocoap(
        self, response: CoapResponse, mtype: Type, token: bytes
    ) -> None:
        expected = response_message(response)
        expected.mtype = mtype
        expected.mid = 0xBEEF
        expected.token = token

        encoded = encode_response(response, mtype=mtype, mid=0xBEEF, token=token)

        assert encoded == expected.encode()

    def test_decodes_to_same_fields(self) -> None:
        response = CoapResponse(Code.CONTENT, b"{}", 50, observe=5)

        decoded = Message.decode(
            encode_response(response, mtype=Type.ACK, mid=9, token=b"\xaa")
        )

        assert decoded.mtype is Type.ACK
        assert decoded.mid == 9
        assert decoded.token == b"\xaa"
        assert decoded.code is Code.CONTENT
        assert decoded.opt.content_format == 50
        assert decoded.opt.observe == 5
        assert decoded.payload == b"{}"

    def test_long_token_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="9-byte token"):
            encode_response(
                CoapResponse(Code.CONTENT), mtype=Type.ACK, mid=1, token=b"t" * 9
            )
