"""CoAP requests from a device over its DTLS session (RFC 7252).

:class:`DeviceClient` is the reference device: it connects with a
device certificate, sends one request at a time and waits for the
response. Confirmable requests are retransmitted with exponential
back-off (RFC 7252 4.2, parameters from 4.8), and the whole exchange is
cut short by the client's timeout. Piggybacked and separate responses
(5.2) are both taken, a Reset ends the request, and a CoAP ping (4.3)
measures a round trip. aiocoap's ``Message`` is used as a codec only.

:meth:`DeviceClient.get_blockwise` reads a large response body in
Block2 blocks (RFC 7959), as the SDK downloads firmware.

Limitations: no Block1, so a request body must fit one datagram; no
Observe notifications; one request in flight at a time.
When the server has ended the session (idle timeout, restart), the next
request raises SessionClosed or RequestTimeout, and the caller makes a
new client. A client is not thread-safe.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from aiocoap.error import UnparsableMessage
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption
from OpenSSL import SSL

from fleetgate.client.context import (
    DEFAULT_CIPHERS,
    DEFAULT_PSK_CIPHERS,
    DeviceCredentials,
    PskCredentials,
    build_client_context,
    build_psk_context,
)
from fleetgate.client.dtls import DEFAULT_MTU, ChannelState, DtlsChannel
from fleetgate.client.errors import RequestRejected, RequestTimeout

StrPath = str | os.PathLike[str]

# Tokens of 4 random bytes: the DTLS session already binds responses to
# this device, so the token only distinguishes this client's requests.
TOKEN_BYTES = 4
# Largest CoAP message one DTLS record carries: 2^14 bytes of plaintext
# (RFC 6347 4.1, RFC 5246 6.2.1), as block-wise transfer is not supported.
MAX_MESSAGE_BYTES = 16384
# Block2 SZX 6: 1024-byte blocks, the SDK's default download block size.
DEFAULT_BLOCK_SZX = 6
# Largest body that get_blockwise assembles. The SDK's int32_t sizes
# allow 2^31 - 1 bytes, but this client holds the whole body in memory.
MAX_BLOCKWISE_BYTES = 64 * 1024 * 1024
# Message IDs of separate responses already acknowledged, so that a
# retransmitted one is acknowledged again instead of reset (RFC 7252 4.5).
ACKNOWLEDGED_WINDOW = 16

_METHODS: dict[str, Code] = {
    code.name.upper(): code
    for code in (
        Code.GET,
        Code.POST,
        Code.PUT,
        Code.DELETE,
        Code.FETCH,
        Code.PATCH,
        Code.iPATCH,
    )
}


@dataclasses.dataclass(frozen=True)
class TransmissionParameters:
    """Retransmission timing of confirmable messages (RFC 7252 4.8).

    The first retransmission comes after a random time between
    ``ack_timeout`` and ``ack_timeout * ack_random_factor`` seconds. Each
    later one waits twice as long. After ``max_retransmit`` of them the
    request fails.
    """

    ack_timeout: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4

    def __post_init__(self) -> None:
        if self.ack_timeout <= 0:
            raise ValueError(f"ack_timeout must be positive, not {self.ack_timeout}")
        if self.ack_random_factor < 1.0:
            raise ValueError(
                f"ack_random_factor must be at least 1, not {self.ack_random_factor}"
            )
        if self.max_retransmit < 0:
            raise ValueError(
                f"max_retransmit must not be negative, not {self.max_retransmit}"
            )

    def initial_timeout(self) -> float:
        """Draw the first retransmission timeout, in seconds."""
        upper = self.ack_timeout * self.ack_random_factor
        return random.uniform(self.ack_timeout, upper)


@dataclasses.dataclass(frozen=True)
class CoapReply:
    """A response to a device's request: its code, body and Content-Format."""

    code: Code
    payload: bytes = b""
    content_format: int | None = None
    # Seconds the response is fresh; on 5.03 and 4.29, when to retry.
    max_age: int | None = None
    block2: BlockOption.BlockwiseTuple | None = None
    etag: bytes | None = None
    size2: int | None = None

    @property
    def successful(self) -> bool:
        """Whether the code is of class 2 (Success)."""
        return bool(self.code.is_successful())


class DeviceClient:
    """A device that talks CoAP over DTLS 1.2 with its certificate or a PSK.

    Use it as a context manager, or call :meth:`connect` and
    :meth:`close`. ``timeout`` bounds the handshake and each request, in
    seconds. ``chain`` names files of intermediates to send after the
    device certificate. The server certificate must chain to ``ca`` and
    name ``server_hostname`` (``host`` by default). With ``psk`` in place
    of ``cert``, ``key`` and ``ca`` the device authenticates with a
    pre-shared key and ``ciphers`` defaults to the PSK suites.
    """

    def __init__(
        self,
        host: str,
        port: int,
        cert: StrPath | None = None,
        key: StrPath | None = None,
        ca: StrPath | None = None,
        *,
        psk: PskCredentials | None = None,
        chain: Sequence[StrPath] = (),
        timeout: float = 5.0,
        server_hostname: str | None = None,
        ciphers: str | None = None,
        mtu: int = DEFAULT_MTU,
        transmission: TransmissionParameters | None = None,
        source_address: tuple[str, int] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        context: SSL.Context
        if psk is not None:
            if cert is not None or key is not None or ca is not None:
                raise ValueError("give either psk or cert, key and ca, not both")
            context = build_psk_context(psk, ciphers=ciphers or DEFAULT_PSK_CIPHERS)
        elif cert is None or key is None or ca is None:
            raise ValueError("give cert, key and ca, or psk")
        else:
            credentials = DeviceCredentials(
                certificate=Path(cert),
                private_key=Path(key),
                server_ca=Path(ca),
                chain=tuple(Path(path) for path in chain),
            )
            context = build_client_context(
                credentials, ciphers=ciphers or DEFAULT_CIPHERS
            )
        self.channel = DtlsChannel(
            context,
            host,
            port,
            server_hostname=server_hostname,
            mtu=mtu,
            source_address=source_address,
        )
        self.timeout = timeout
        self.transmission = transmission or TransmissionParameters()
        # RFC 7252 4.4: start message IDs at a random value.
        self._mid = secrets.randbelow(0x10000)
        self._acknowledged: collections.deque[int] = collections.deque(
            maxlen=ACKNOWLEDGED_WINDOW
        )

    @property
    def state(self) -> ChannelState:
        """Lifecycle of the underlying DTLS session."""
        return self.channel.state

    @property
    def cipher(self) -> str | None:
        """The negotiated cipher suite (OpenSSL name), once connected."""
        return self.channel.cipher

    def connect(self) -> None:
        """Complete the DTLS handshake with the server."""
        self.channel.connect(self.timeout)

    def close(self) -> None:
        """End the session with close_notify. A second call does nothing."""
        self.channel.close()

    def __enter__(self) -> DeviceClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def request(
        self,
        method: str | Code,
        path: str,
        payload: bytes = b"",
        *,
        content_format: int | None = None,
        accept: int | None = None,
        confirmable: bool = True,
        block2: BlockOption.BlockwiseTuple | None = None,
    ) -> CoapReply:
        """Send one request and return its response.

        ``path`` is split on "/" into Uri-Path options and on "?" and "&"
        into Uri-Query options, without percent-decoding. ``block2`` requests
        one block of the response body. Raises RequestTimeout,
        RequestRejected or SessionClosed.
        """
        code = _request_code(method)
        segments, queries = _split_path(path)
        message = Message(code=code, payload=payload)
        message.mtype = Type.CON if confirmable else Type.NON
        message.mid = self._next_mid()
        message.token = secrets.token_bytes(TOKEN_BYTES)
        message.opt.uri_path = segments
        if queries:
            message.opt.uri_query = queries
        if content_format is not None:
            message.opt.content_format = content_format
        if accept is not None:
            message.opt.accept = accept
        if block2 is not None:
            message.opt.block2 = block2

        action = f"{code.name} /{path.lstrip('/')}"
        reply = self._exchange(message, action)
        if reply.mtype is Type.RST:
            raise RequestRejected(
                f"cannot {action} on {self.channel.peer}: the server reset "
                f"message {message.mid}"
            )
        content = reply.opt.content_format
        max_age = reply.opt.max_age
        return CoapReply(
            code=reply.code,
            payload=reply.payload,
            content_format=None if content is None else int(content),
            max_age=None if max_age is None else int(max_age),
            block2=reply.opt.block2,
            etag=reply.opt.etag,
            size2=reply.opt.size2,
        )

    def get_blockwise(
        self,
        path: str,
        *,
        accept: int | None = None,
        szx: int = DEFAULT_BLOCK_SZX,
        max_bytes: int = MAX_BLOCKWISE_BYTES,
    ) -> CoapReply:
        """GET ``path`` block by block (RFC 7959, 2.4) and return the whole body.

        Each block is its own confirmable GET with Block2 ``szx``, as
        Golioth's firmware SDK downloads. Raises RequestRejected when the
        ETag changes between blocks, because the body changed under the
        transfer, or when the body would exceed ``max_bytes``. An error
        response is returned as it came.
        """
        if not 0 <= szx <= DEFAULT_BLOCK_SZX:
            raise ValueError(f"szx must be 0 to {DEFAULT_BLOCK_SZX}, not {szx}")
        body = bytearray()
        first: CoapReply | None = None
        number = 0
        while True:
            block = BlockOption.BlockwiseTuple(number, False, szx)
            reply = self.request("GET", path, accept=accept, block2=block)
            if not reply.successful:
                return reply
            if first is None:
                first = reply
            elif reply.etag != first.etag:
                raise RequestRejected(
                    f"cannot GET /{path.lstrip('/')}: its ETag changed at "
                    f"block {number}, so the body changed during the transfer"
                )
            body.extend(reply.payload)
            if len(body) > max_bytes:
                raise RequestRejected(
                    f"cannot GET /{path.lstrip('/')}: the body exceeds "
                    f"{max_bytes} bytes"
                )
            if reply.block2 is None or not reply.block2.more:
                break
            if not reply.payload:
                raise RequestRejected(
                    f"cannot GET /{path.lstrip('/')}: block {number} is empty "
                    "but has the More flag"
                )
            # The server may return smaller blocks than requested.
            szx = reply.block2.size_exponent
            number = len(body) // reply.block2.size
        return CoapReply(
            code=first.code,
            payload=bytes(body),
            content_format=first.content_format,
            max_age=first.max_age,
            etag=first.etag,
            size2=first.size2,
        )

    def ping(self) -> float:
        """Send a CoAP ping (an empty confirmable message) and return the round trip.

        The server replies with a Reset (RFC 7252 4.3). The round-trip
        time is in seconds and includes any retransmissions.
        """
        message = Message(code=Code.EMPTY)
        message.mtype = Type.CON
        message.mid = self._next_mid()
        message.token = b""
        started = time.monotonic()
        self._exchange(message, "ping")
        return time.monotonic() - started

    # Message layer

    def _exchange(self, message: Message, action: str) -> Message:
        """Send ``message``, retransmitting it, and return the reply.

        The reply is a response matched by token, or the Reset or empty
        Acknowledgement of ``message`` when it is a ping.
        """
        encoded = message.encode()
        if len(encoded) > MAX_MESSAGE_BYTES:
            raise ValueError(
                f"cannot {action}: the message of {len(encoded)} bytes exceeds "
                f"the maximum of {MAX_MESSAGE_BYTES} in one DTLS record"
            )
        self._answer_queued()
        confirmable = message.mtype is Type.CON
        started = time.monotonic()
        deadline = started + self.timeout
        interval = self.transmission.initial_timeout()
        resend_at = started + interval if confirmable else float("inf")
        retransmissions = 0
        self.channel.send(encoded)

        while True:
            now = time.monotonic()
            if now >= deadline:
                raise RequestTimeout(
                    f"cannot {action} on {self.channel.peer}: timed out after "
                    f"{self.timeout:g} s without a response "
                    f"({retransmissions} retransmissions)"
                )
            if now >= resend_at:
                if retransmissions >= self.transmission.max_retransmit:
                    raise RequestTimeout(
                        f"cannot {action} on {self.channel.peer}: no response "
                        f"after {retransmissions} retransmissions"
                    )
                self.channel.send(encoded)
                retransmissions += 1
                interval *= 2
                resend_at = now + interval
                continue

            record = self.channel.receive(min(deadline, resend_at) - now)
            if record is None:
                continue
            answer = self._match(message, record)
            if answer is None:
                continue
            if answer.mtype is Type.ACK and answer.code is Code.EMPTY:
                if message.code is Code.EMPTY:
                    return answer  # some servers acknowledge a ping
                # A separate response follows (RFC 7252 5.2.2); stop
                # retransmitting and wait for it until the deadline.
                resend_at = float("inf")
                continue
            return answer

    def _match(self, sent: Message, record: bytes) -> Message | None:
        """Return ``record`` decoded when it replies to ``sent``, else None.

        A confirmable separate response is acknowledged on the way, and
        other confirmable messages are rejected with a Reset (RFC 7252 4.2).
        """
        received = self._decode(record)
        if received is None:
            return None
        if received.mtype in (Type.ACK, Type.RST):
            if received.mid != sent.mid:
                return None  # a reply to an earlier, abandoned message
            if received.mtype is Type.RST or received.code is Code.EMPTY:
                return received
            return received if received.token == sent.token else None

        is_response = received.code.is_response() and received.token == sent.token
        if is_response and sent.code is not Code.EMPTY:
            if received.mtype is Type.CON:
                self._acknowledge(received.mid)
            return received
        self._reject_unexpected(received)
        return None

    def _answer_queued(self) -> None:
        """Handle what arrived between requests, such as a late response."""
        while (record := self.channel.receive(0)) is not None:
            received = self._decode(record)
            if received is not None:
                self._reject_unexpected(received)

    def _reject_unexpected(self, received: Message) -> None:
        if received.mtype is not Type.CON:
            return
        if received.mid in self._acknowledged:
            self._acknowledge(received.mid)  # our ACK was lost
        else:
            self._send_empty(Type.RST, received.mid)

    def _acknowledge(self, mid: int) -> None:
        if mid not in self._acknowledged:
            self._acknowledged.append(mid)
        self._send_empty(Type.ACK, mid)

    def _send_empty(self, mtype: Type, mid: int) -> None:
        empty = Message(code=Code.EMPTY)
        empty.mtype = mtype
        empty.mid = mid
        empty.token = b""
        self.channel.send(empty.encode())

    def _decode(self, record: bytes) -> Message | None:
        try:
            return Message.decode(record)
        except (UnparsableMessage, UnicodeDecodeError):
            # aiocoap raises UnicodeDecodeError for a string option that
            # is not UTF-8. RFC 7252 4.2: a confirmable message with a
            # format error is rejected with a Reset, others are ignored.
            if len(record) >= 4 and record[0] >> 4 == 0x4:  # version 1, CON
                self._send_empty(Type.RST, int.from_bytes(record[2:4], "big"))
            return None

    def _next_mid(self) -> int:
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid


def _request_code(method: str | Code) -> Code:
    code = method if isinstance(method, Code) else _METHODS.get(method.upper())
    if code is None or not code.is_request():
        raise ValueError(
            f"method must be one of {', '.join(sorted(_METHODS))}, not {method!r}"
        )
    return code


def _split_path(path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split ``path[?query]`` into Uri-Path and Uri-Query option values."""
    location, _, query = path.partition("?")
    location = location.removeprefix("/")
    # RFC 7252 6.4 step 8: an empty path sends no Uri-Path option.
    segments = tuple(location.split("/")) if location else ()
    queries = tuple(query.split("&")) if query else ()
    return segments, queries
