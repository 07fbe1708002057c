"""Encoding one Observe notification for many observers (RFC 7641).

Every observer of a value gets the same code, options and payload. Only
the message type, message ID, token and Observe sequence number differ
(RFC 7252 section 3). :class:`SharedNotification` encodes the shared
part once with aiocoap and splices in the four per-observer fields, so
that a change fanned out to thousands of observers encodes its options
once instead of once per observer.
"""

from __future__ import annotations

import struct

from aiocoap.numbers.types import Type

from fleetgate.gateway.resources import CoapResponse, response_message

# RFC 7641 section 4.4: sequence numbers are 24-bit, so at most 3 bytes.
MAX_OBSERVE_BYTES = 3
# RFC 7252 section 3: a token is at most 8 bytes.
MAX_TOKEN_BYTES = 8
COAP_VERSION = 1
# RFC 7252 section 3: a byte of version, type and token length, then the
# code byte and the 2-byte message ID.
_HEADER = struct.Struct("!BBH")


class SharedNotification:
    """A successful response encoded once, with per-observer fields spliced in."""

    def __init__(self, response: CoapResponse) -> None:
        self.response = response
        self._code = int(response.code)
        # By the length of the Observe value: the encoded options before
        # the value and the options and payload after it.
        self._parts: dict[int, tuple[bytes, bytes]] = {}

    def encode(self, *, mtype: Type, mid: int, token: bytes, observe: int) -> bytes:
        """Return the notification for one observer, as aiocoap would encode it."""
        if len(token) > MAX_TOKEN_BYTES:
            raise ValueError(
                f"cannot encode a notification: its token has {len(token)} bytes, "
                f"over the maximum of {MAX_TOKEN_BYTES}"
            )
        # RFC 7252 section 3.2: a uint option takes as few bytes as it can.
        length = (observe.bit_length() + 7) // 8
        parts = self._parts.get(length)
        if parts is None:
            parts = self._parts[length] = self._split(length)
        before, after = parts
        first = COAP_VERSION << 6 | mtype << 4 | len(token)
        header = _HEADER.pack(first, self._code, mid)
        value = observe.to_bytes(length, "big")
        return b"".join((header, token, before, value, after))

    def _split(self, length: int) -> tuple[bytes, bytes]:
        """Encode the response with an Observe value of ``length`` bytes and cut it.

        Two encodings whose Observe values have the same length but
        differ in every byte differ only in those bytes, which locates
        the value whatever options come before it.
        """
        if not 0 <= length <= MAX_OBSERVE_BYTES:
            raise ValueError(
                f"cannot encode a notification: an Observe value of {length} "
                f"bytes exceeds the maximum of {MAX_OBSERVE_BYTES}"
            )
        first = self._encode_bare(int.from_bytes(b"\x11" * length, "big"))
        if length == 0:
            return first, b""
        second = self._encode_bare(int.from_bytes(b"\x22" * length, "big"))
        start = next(
            index
            for index, (a, b) in enumerate(zip(first, second, strict=True))
            if a != b
        )
        return first[:start], first[start + length :]

    def _encode_bare(self, observe: int) -> bytes:
        """Encode the response without its 4-byte header and with no token."""
        message = response_message(self.response)
        message.opt.observe = observe
        message.mtype = Type.NON
        message.mid = 0
        message.token = b""
        encoded: bytes = message.encode()
        return encoded[4:]
