"""DTLS 1.2 record framing, and the stateless cookie exchange.

OpenSSL is driven through memory BIOs, so the gateway frames datagrams
itself: it splits what OpenSSL writes into records and packs them into
datagrams no larger than the MTU, and it inspects a first datagram from
an unknown address before any per-client state exists.

The cookie exchange (RFC 6347 section 4.2.1) is handled here without
OpenSSL: a ClientHello without a valid cookie gets a HelloVerifyRequest
whose cookie is an HMAC of the client's address under a rotating
secret. Only a ClientHello carrying such a cookie makes the gateway
allocate a TLS connection, so spoofed sources cost one HMAC and a reply
smaller than the request.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import struct
import time
from collections.abc import Iterator

RECORD_HEADER = struct.Struct("!BHHHIH")  # type, version, epoch, seq(48), length
RECORD_HEADER_SIZE = 13
HANDSHAKE_HEADER_SIZE = 12

CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23
HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_HELLO_VERIFY_REQUEST = 3
HANDSHAKE_FINISHED = 20
# RFC 6347 section 4.2.1: HelloVerifyRequest always carries DTLS 1.0.
DTLS_1_0 = 0xFEFF
DTLS_1_2 = 0xFEFD


@dataclasses.dataclass(frozen=True)
class ClientHello:
    """The fields of a first-flight ClientHello that the cookie check needs."""

    record_version: int
    record_sequence: bytes  # 6 bytes, echoed in the HelloVerifyRequest
    # 32 bytes, the same in both ClientHellos of a connection (RFC 6347
    # 4.2.1), so a copy of an earlier hello can be recognised.
    random: bytes
    cookie: bytes


def iter_records(datagram: bytes) -> Iterator[bytes]:
    """Yield the whole records of a datagram; a truncated tail is dropped."""
    size = len(datagram)
    offset = 0
    while offset + RECORD_HEADER_SIZE <= size:
        # The length field closes the header (RFC 6347 4.1).
        end = (
            offset
            + RECORD_HEADER_SIZE
            + (datagram[offset + 11] << 8 | datagram[offset + 12])
        )
        if end > size:
            return
        yield datagram[offset:end]
        offset = end


def pack_datagrams(flight: bytes, mtu: int) -> list[bytes]:
    """Pack the records OpenSSL wrote into datagrams of at most ``mtu`` bytes.

    A record larger than the MTU is sent alone; OpenSSL keeps handshake
    records within the MTU set on the connection, so this only happens
    for application data the caller chose to send whole.
    """
    datagrams: list[bytes] = []
    current = bytearray()
    for record in iter_records(flight):
        if current and len(current) + len(record) > mtu:
            datagrams.append(bytes(current))
            current.clear()
        current += record
    if current:
        datagrams.append(bytes(current))
    return datagrams


def parse_client_hello(datagram: bytes) -> ClientHello | None:
    """Return the ClientHello opening ``datagram``, or None if it is not one.

    Only an unfragmented ClientHello in epoch 0 is accepted: a first
    flight split across datagrams cannot be checked statelessly, and
    common clients never split a ClientHello before the cookie round.
    """
    if len(datagram) < RECORD_HEADER_SIZE + HANDSHAKE_HEADER_SIZE:
        return None
    # Most datagrams are not ClientHellos, and two bytes rule them out
    # without copying the record.
    if (
        datagram[0] != CONTENT_HANDSHAKE
        or datagram[RECORD_HEADER_SIZE] != HANDSHAKE_CLIENT_HELLO
    ):
        return None
    content_type, version, epoch = struct.unpack_from("!BHH", datagram, 0)
    if epoch != 0:
        return None
    if version not in (DTLS_1_0, DTLS_1_2):
        return None
    (record_length,) = struct.unpack_from("!H", datagram, 11)
    body = datagram[RECORD_HEADER_SIZE : RECORD_HEADER_SIZE + record_length]
    if len(body) != record_length or len(body) < HANDSHAKE_HEADER_SIZE:
        return None
    if body[0] != HANDSHAKE_CLIENT_HELLO:
        return None
    message_length = int.from_bytes(body[1:4], "big")
    fragment_offset = int.from_bytes(body[6:9], "big")
    fragment_length = int.from_bytes(body[9:12], "big")
    if fragment_offset != 0 or fragment_length != message_length:
        return None
    hello = body[HANDSHAKE_HEADER_SIZE : HANDSHAKE_HEADER_SIZE + fragment_length]
    # client_version(2) random(32) session_id<0..32> cookie<0..255>
    position = 34
    if len(hello) < position + 1:
        return None
    position += 1 + hello[position]
    if len(hello) < position + 1:
        return None
    cookie_length = hello[position]
    cookie = hello[position + 1 : position + 1 + cookie_length]
    if len(cookie) != cookie_length:
        return None
    return ClientHello(
        record_version=version,
        record_sequence=datagram[5:11],
        random=hello[2:34],
        cookie=cookie,
    )


def hello_verify_request(hello: ClientHello, cookie: bytes) -> bytes:
    """Build the HelloVerifyRequest datagram that responds to ``hello``."""
    body = struct.pack("!HB", DTLS_1_0, len(cookie)) + cookie
    # message_seq 0: RFC 6347 section 4.2.2, the first message of each side.
    handshake = (
        bytes([HANDSHAKE_HELLO_VERIFY_REQUEST])
        + len(body).to_bytes(3, "big")
        + b"\x00\x00"
        + b"\x00\x00\x00"
        + len(body).to_bytes(3, "big")
        + body
    )
    # The record sequence number echoes the ClientHello's (RFC 6347 4.2.1).
    header = (
        struct.pack("!BHH", CONTENT_HANDSHAKE, DTLS_1_0, 0)
        + hello.record_sequence
        + struct.pack("!H", len(handshake))
    )
    return header + handshake


class CookieJar:
    """Issues and checks address-bound cookies under a rotating secret.

    A cookie stays valid for one to two rotation periods: the previous
    secret is still accepted so that a rotation between a client's two
    ClientHellos does not fail its handshake.
    """

    def __init__(self, *, rotate_seconds: float = 60.0) -> None:
        self._rotate_seconds = rotate_seconds
        self._current = secrets.token_bytes(32)
        self._previous = self._current
        self._rotated_at = time.monotonic()
        # The last cookie that passed check(), with its address and the
        # secret it matched. The listener checks a ClientHello's cookie,
        # and OpenSSL's cookie callback then checks the same one again.
        self._last_valid: tuple[tuple[str, int], bytes, bytes] | None = None

    def _rotate_if_due(self) -> None:
        now = time.monotonic()
        elapsed = now - self._rotated_at
        if elapsed < self._rotate_seconds:
            return
        periods = elapsed // self._rotate_seconds if self._rotate_seconds else 1
        # After an idle spell of two periods or more, the current secret
        # is too old to become the previous one.
        if periods >= 2:
            self._previous = secrets.token_bytes(32)
        else:
            self._previous = self._current
        self._current = secrets.token_bytes(32)
        self._rotated_at = now

    def _accepted_secrets(self) -> tuple[bytes, bytes]:
        """Return the current secret and the previous one, rotating first."""
        self._rotate_if_due()
        return self._current, self._previous

    def issue(self, address: tuple[str, int]) -> bytes:
        """Return the cookie for ``address`` under the current secret."""
        return cookie_mac(self._accepted_secrets()[0], address)

    def check(self, address: tuple[str, int], cookie: bytes) -> bool:
        """Tell whether ``cookie`` was issued to ``address`` recently."""
        accepted = self._accepted_secrets()
        last = self._last_valid
        if (
            last is not None
            and last[0] == address
            and last[2] in accepted
            and hmac.compare_digest(cookie, last[1])
        ):
            return True
        for secret in accepted:
            if hmac.compare_digest(cookie, cookie_mac(secret, address)):
                self._last_valid = (address, cookie, secret)
                return True
        return False


def cookie_mac(secret: bytes, address: tuple[str, int]) -> bytes:
    """Return the cookie of ``address`` under ``secret``: a truncated HMAC-SHA256."""
    peer = f"{address[0]}|{address[1]}".encode()
    return hmac.digest(secret, peer, "sha256")[:16]
