"""The gateway's CoAP codec, checked against aiocoap's."""

from __future__ import annotations

import pytest
from aiocoap.error import UnparsableMessage
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption

from fleetgate.gateway.codec import decode_message, encode_response
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


class TestDecodeMessage:
    def test_request_decodes_as_aiocoap_does(self) -> None:
        message = Message(code=Code.POST, payload=b'{"n":1}')
        message.mtype = Type.CON
        message.mid = 0x1234
        message.token = b"12345678"
        message.opt.uri_path = (".d", "bench")
        message.opt.content_format = 50
        encoded = message.encode()

        decoded = decode_message(encoded)

        expected = Message.decode(encoded)
        assert decoded.mtype is expected.mtype
        assert decoded.mid == expected.mid
        assert decoded.token == expected.token
        assert decoded.code is expected.code
        assert decoded.opt.uri_path == expected.opt.uri_path
        assert decoded.opt.content_format == expected.opt.content_format
        assert decoded.payload == expected.payload

    @pytest.mark.parametrize("token_length", range(9, 16))
    def test_reserved_token_length_is_unparsable(self, token_length: int) -> None:
        datagram = bytes([0x40 | token_length, 0x01, 0, 1]) + b"t" * token_length

        with pytest.raises(UnparsableMessage, match="reserved token length"):
            decode_message(datagram)

    def test_token_cut_short_is_unparsable(self) -> None:
        with pytest.raises(UnparsableMessage, match="inside its token"):
            decode_message(bytes([0x48, 0x01, 0, 1]) + b"1234")

    @pytest.mark.parametrize(
        "datagram",
        [
            pytest.param(b"", id="empty"),
            pytest.param(bytes([0x40, 0x01, 0]), id="header-cut-short"),
            pytest.param(bytes([0x40, 0x01, 0, 1, 0xF1, 0]), id="reserved-delta"),
            pytest.param(bytes([0x40, 0x01, 0, 1, 0xBF]), id="reserved-length"),
            pytest.param(bytes([0x40, 0x01, 0, 1, 0xB5, 0x61]), id="value-cut-short"),
            pytest.param(bytes([0x40, 0x01, 0, 1, 0xD1]), id="extension-cut-short"),
            pytest.param(bytes([0x80, 0x01, 0, 1]), id="version-2"),
        ],
    )
    def test_malformed_is_unparsable_as_in_aiocoap(self, datagram: bytes) -> None:
        with pytest.raises(UnparsableMessage):
            Message.decode(datagram)
        with pytest.raises(UnparsableMessage):
            decode_message(datagram)
