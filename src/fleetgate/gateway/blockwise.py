"""Block-wise transfer (RFC 7959) of request and response bodies.

Block2: a response body larger than one block is sent in blocks of at
most 1024 bytes (SZX 6), or of the smaller size the device asks for in
its Block2 option. A request without Block2 gets block 0 with the More
flag, and the device asks for the rest (late negotiation, section 2.4).
Each block is cut from a fresh rendering of the resource, so blocks carry
an ETag of the whole representation, from which a device can tell that
the value changed between blocks (RFC 7252 section 5.10.6). An error
response (4.xx or 5.xx) is never cut: its diagnostic goes whole. Block 0
carries Size2, the size of the whole body (section 4). Golioth's
firmware SDK fetches large resources this way: each block is its own
GET with Block2 SZX 6 and the token of block 0 (``src/coap_client.c``).
A resource too large to render whole, such as a firmware image, reads
only the requested block and returns it with its Block2 option set,
which is passed on untouched.

Block1: a request body sent in blocks is put together per session and
resource (method, Uri-Path and Uri-Query) and handed to the resource once
the last block arrives. Blocks must come in order: a block that does not
continue the body gets 4.08 Request Entity Incomplete (section 2.9.2).
Every block but the last gets 2.31 Continue. A body larger than
``max_body`` (64 KiB by default) gets 4.13 with Size1, the largest
accepted size. A session keeps at most ``MAX_TRANSFERS`` bodies in
progress, dropping the least recently used, and a body left without a
new block for ``TRANSFER_TIMEOUT`` seconds is dropped. BERT (SZX 7) is
for CoAP over TCP and gets 4.00 here.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import TypeAlias

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from fleetgate.gateway.resources import CoapResponse

Block: TypeAlias = BlockOption.BlockwiseTuple

MAX_SZX = 6
MAX_BLOCK_BYTES = 1 << (MAX_SZX + 4)
MAX_BODY_BYTES = 64 * 1024
MAX_TRANSFERS = 4
# RFC 7252 section 4.8.2: EXCHANGE_LIFETIME would be 247 s; a device
# that pauses for a minute in the middle of a body starts again.
TRANSFER_TIMEOUT = 60.0
ETAG_BYTES = 8

TransferKey = tuple[int, tuple[str, ...], tuple[str, ...]]


@dataclasses.dataclass
class _Transfer:
    body: bytearray
    updated: float


class BlockwiseTransfers:
    """Block1 bodies in progress and Block2 slicing for one session."""

    def __init__(
        self,
        *,
        max_body: int = MAX_BODY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_body = max_body
        self._clock = clock
        self._transfers: collections.OrderedDict[TransferKey, _Transfer] = (
            collections.OrderedDict()
        )

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for request bodies in progress."""
        return sum(len(transfer.body) for transfer in self._transfers.values())

    def reassemble(self, message: Message) -> Message | CoapResponse:
        """Return the whole request once complete, or the response to a block."""
        block = message.opt.block1
        if block is None:
            return message
        if block.size_exponent > MAX_SZX:
            return CoapResponse.diagnostic(
                Code.BAD_REQUEST, "Block1 SZX 7 (BERT) is not supported over UDP"
            )
        size1 = message.opt.size1
        if size1 is not None and size1 > self.max_body:
            return self._too_large(f"announced size {size1}")
        if block.more and len(message.payload) != block.size:
            # RFC 7959 section 2.3: every block but the last is full.
            return CoapResponse.diagnostic(
                Code.BAD_REQUEST,
                f"Block1 {block.block_number} has {len(message.payload)} bytes, "
                f"but a block with the More flag must have {block.size}",
            )

        now = self._clock()
        self._expire(now)
        key = _transfer_key(message)
        transfer = self._transfers.get(key)
        if block.block_number == 0:
            transfer = _Transfer(bytearray(), now)
            self._transfers[key] = transfer
            while len(self._transfers) > MAX_TRANSFERS:
                self._transfers.popitem(last=False)
        elif transfer is None or len(transfer.body) != block.start:
            self._transfers.pop(key, None)
            return CoapResponse.diagnostic(
                Code.REQUEST_ENTITY_INCOMPLETE,
                f"Block1 {block.block_number} does not continue a body in "
                "progress, so send the body again from block 0",
            )
        if len(transfer.body) + len(message.payload) > self.max_body:
            del self._transfers[key]
            return self._too_large("body")

        transfer.body.extend(message.payload)
        transfer.updated = now
        self._transfers.move_to_end(key)
        if block.more:
            return CoapResponse(Code.CONTINUE, block1=block)
        del self._transfers[key]
        return message.copy(payload=bytes(transfer.body))

    def finish(self, request: Message, response: CoapResponse) -> CoapResponse:
        """Echo the last Block1 and cut a large body into the requested Block2."""
        block1 = request.opt.block1
        if block1 is not None and not block1.more:
            response = dataclasses.replace(response, block1=block1)
        if response.block2 is not None:
            return response  # the resource cut the block itself
        if response.code.class_ >= 4:
            # An error's diagnostic is no block of the requested body, so
            # it goes whole, without Block2, Size2 or ETag.
            return response
        return self._slice(request.opt.block2, response)

    def _slice(self, requested: Block | None, response: CoapResponse) -> CoapResponse:
        payload = response.payload
        if requested is None:
            if len(payload) <= MAX_BLOCK_BYTES:
                return response
            requested = Block(0, False, MAX_SZX)
        szx = min(requested.size_exponent, MAX_SZX)
        size = 1 << (szx + 4)
        start = requested.block_number * size
        if start >= len(payload) and start > 0:
            return CoapResponse.diagnostic(
                Code.BAD_OPTION,
                f"Block2 {requested.block_number} of {size} bytes is past the "
                f"end of the {len(payload)}-byte body",
            )

        more = start + size < len(payload)
        return dataclasses.replace(
            response,
            payload=payload[start : start + size],
            block2=Block(requested.block_number, more, szx),
            size2=len(payload) if requested.block_number == 0 else None,
            etag=hashlib.sha256(payload).digest()[:ETAG_BYTES],
        )

    def _too_large(self, what: str) -> CoapResponse:
        response = CoapResponse.diagnostic(
            Code.REQUEST_ENTITY_TOO_LARGE,
            f"request {what} exceeds the maximum of {self.max_body} bytes",
        )
        # RFC 7959 section 4: Size1 in a 4.13 gives the largest size taken.
        return dataclasses.replace(response, size1=self.max_body)

    def _expire(self, now: float) -> None:
        for key in [
            key
            for key, transfer in self._transfers.items()
            if now - transfer.updated > TRANSFER_TIMEOUT
        ]:
            del self._transfers[key]


def _transfer_key(message: Message) -> TransferKey:
    return (
        int(message.code),
        tuple(message.opt.uri_path),
        tuple(message.opt.uri_query),
    )
