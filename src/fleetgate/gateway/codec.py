"""The gateway's CoAP message codec (RFC 7252 section 3).

Every request a device sends gets a response, so its encoding is on
the hot path. Building an aiocoap :class:`~aiocoap.message.Message`
and its option objects only to serialise them cost several times the
encoding itself. :func:`encode_response` writes the bytes directly from
a :class:`CoapResponse`, and its output is byte for byte what aiocoap's
``Message.encode`` gives for the same response.

Requests are still decoded by aiocoap, because the block-wise and
Observe layers work on its Message objects. :func:`decode_message` adds
the token checks that aiocoap 0.4.17 skips.

NOTE: a payload marker followed by no payload is a format error (RFC
7252 3), but aiocoap decodes it as an empty payload, so such a request
is served.
"""

from __future__ import annotations

import struct

from aiocoap.error import UnparsableMessage
from aiocoap.message import Message
from aiocoap.optiontypes import BlockOption

from fleetgate.gateway.resources import CoapResponse

# Option numbers of the options a response can carry (RFC 7252 5.10,
# RFC 7641 2, RFC 7959 2.1), in ascending order as the encoding needs.
ETAG = 4
OBSERVE = 6
CONTENT_FORMAT = 12
MAX_AGE = 14
BLOCK2 = 23
BLOCK1 = 27
SIZE2 = 28
SIZE1 = 60

VERSION = 1
PAYLOAD_MARKER = b"\xff"
MAX_TOKEN_LENGTH = 8

_HEADER = struct.Struct("!BBH")


def decode_message(datagram: bytes) -> Message:
    """Decode one CoAP message, raising UnparsableMessage for a format error.

    A token length of 9 to 15 is reserved, and a token cut short by the
    end of the datagram is malformed (RFC 7252 3). Both are format
    errors, which aiocoap accepts.
    """
    if datagram:
        token_length = datagram[0] & 0x0F
        if token_length > MAX_TOKEN_LENGTH:
            raise UnparsableMessage(f"reserved token length {token_length}")
        if len(datagram) < 4 + token_length:
            raise UnparsableMessage("message ends inside its token")
    return Message.decode(datagram)


def encode_response(
    response: CoapResponse, *, mtype: int, mid: int, token: bytes
) -> bytes:
    """Return ``response`` as a CoAP message of type ``mtype``.

    Raises ValueError for a token longer than 8 bytes (RFC 7252 3).
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(
            f"cannot encode a response with a {len(token)}-byte token: "
            f"the maximum is {MAX_TOKEN_LENGTH} (RFC 7252 3)"
        )
    first = VERSION << 6 | (mtype & 0x03) << 4 | len(token)
    parts = [_HEADER.pack(first, int(response.code), mid), token]

    previous = 0
    for number, value in _options(response):
        parts.append(_option_header(number - previous, len(value)))
        parts.append(value)
        previous = number
    if response.payload:
        parts.append(PAYLOAD_MARKER)
        parts.append(response.payload)
    return b"".join(parts)


def _options(response: CoapResponse) -> list[tuple[int, bytes]]:
    options: list[tuple[int, bytes]] = []
    if response.etag is not None:
        options.append((ETAG, response.etag))
    if response.observe is not None:
        options.append((OBSERVE, _uint(response.observe)))
    if response.content_format is not None:
        options.append((CONTENT_FORMAT, _uint(response.content_format)))
    if response.max_age is not None:
        options.append((MAX_AGE, _uint(response.max_age)))
    if response.block2 is not None:
        options.append((BLOCK2, _block(response.block2)))
    if response.block1 is not None:
        options.append((BLOCK1, _block(response.block1)))
    if response.size2 is not None:
        options.append((SIZE2, _uint(response.size2)))
    if response.size1 is not None:
        options.append((SIZE1, _uint(response.size1)))
    return options


def _uint(value: int) -> bytes:
    """Encode a uint option value in as few bytes as it needs (RFC 7252 3.2)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _block(block: BlockOption.BlockwiseTuple) -> bytes:
    """Encode a Block1 or Block2 value: NUM, M, SZX (RFC 7959 2.2)."""
    return _uint(block.block_number << 4 | int(block.more) << 3 | block.size_exponent)


def _option_header(delta: int, length: int) -> bytes:
    """Encode an option's delta and length nibbles and extensions (RFC 7252 3.1)."""
    delta_nibble, delta_extension = _nibble(delta)
    length_nibble, length_extension = _nibble(length)
    return (
        bytes((delta_nibble << 4 | length_nibble,)) + delta_extension + length_extension
    )


def _nibble(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    if value < 65805:
        return 14, (value - 269).to_bytes(2, "big")
    raise ValueError(
        f"cannot encode option delta or length {value}: the maximum is 65804 "
        "(RFC 7252 3.1)"
    )
