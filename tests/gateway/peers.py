"""Misbehaving and half-finished peers for the gateway tests.

:class:`PartialHandshake` drives a pyOpenSSL DTLS client by hand over a
UDP socket, so a test can stop after any flight. :class:`UdpRelay`
forwards datagrams between a client and the gateway and can drop,
record or inject them. The gateway receives all of them, injected ones
included, from the relay's address.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from OpenSSL import SSL

from fleetgate.gateway import records

LOOPBACK = "127.0.0.1"
# The clients' ciphertext MTU: the IPv6 minimum MTU less IPv6 and UDP headers.
MTU = 1232
# Hard bounds of the relay's forwarding loop.
RELAY_LIFETIME = 60.0
RELAY_POLL = 0.02
# ClientHello offset of the session ID length: record header, handshake
# header, client_version (2) and random (32) (RFC 6347 4.2.1, 4.3.2).
_SESSION_ID_OFFSET = records.RECORD_HEADER_SIZE + records.HANDSHAKE_HEADER_SIZE + 34


def udp_socket(
    port: int, *, source_port: int = 0, timeout: float = 2.0
) -> socket.socket:
    """Return a UDP socket on loopback connected to ``port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, source_port))
    sock.connect((LOOPBACK, port))
    sock.settimeout(timeout)
    return sock


def receive_all(sock: socket.socket, wait: float) -> list[bytes]:
    """Return every datagram that arrives on ``sock`` within ``wait`` seconds.

    A ``wait`` of 0 only takes the datagrams already queued.
    """
    received: list[bytes] = []
    previous_timeout = sock.gettimeout()
    deadline = time.monotonic() + wait
    try:
        while True:
            # A zero timeout makes the socket non-blocking.
            sock.settimeout(max(deadline - time.monotonic(), 0.0))
            try:
                received.append(sock.recv(65535))
            except (TimeoutError, BlockingIOError):
                return received
    finally:
        sock.settimeout(previous_timeout)


def with_cookie(hello: bytes, cookie: bytes) -> bytes:
    """Return a first-flight ClientHello datagram carrying ``cookie`` instead."""
    position = _SESSION_ID_OFFSET
    position += 1 + hello[position]
    old_length = hello[position]
    body = (
        hello[:position]
        + bytes([len(cookie)])
        + cookie
        + hello[position + 1 + old_length :]
    )
    growth = len(cookie) - old_length
    (record_length,) = struct.unpack_from("!H", body, 11)
    handshake_length = int.from_bytes(body[14:17], "big")
    patched = bytearray(body)
    struct.pack_into("!H", patched, 11, record_length + growth)
    new_length = (handshake_length + growth).to_bytes(3, "big")
    patched[14:17] = new_length  # message length
    patched[22:25] = new_length  # fragment length: the hello is unfragmented
    return bytes(patched)


class PartialHandshake:
    """A DTLS 1.2 client that advances by one flight per call.

    With a certificate and key it can also finish the handshake.
    """

    def __init__(
        self,
        port: int,
        *,
        source_port: int = 0,
        certificate: Path | None = None,
        key: Path | None = None,
    ) -> None:
        context = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        context.set_options(SSL.OP_NO_QUERY_MTU)
        context.set_cipher_list(b"ECDHE-ECDSA-AES128-CCM8:@SECLEVEL=0")
        if certificate is not None and key is not None:
            context.use_certificate_file(str(certificate))
            context.use_privatekey_file(str(key))
        self.connection = SSL.Connection(context, None)
        self.connection.set_connect_state()
        self.connection.set_ciphertext_mtu(MTU)
        self.socket = udp_socket(port, source_port=source_port)

    @property
    def source_port(self) -> int:
        """The local UDP port, which the gateway records as the peer's."""
        return int(self.socket.getsockname()[1])

    def next_flight(self) -> bytes:
        """Let OpenSSL advance and return what it wants to send."""
        with contextlib.suppress(SSL.WantReadError):
            self.connection.do_handshake()
        return self.connection.bio_read(65535)

    def exchange(self, flight: bytes) -> bytes:
        """Send ``flight``, feed the reply to OpenSSL and return the reply."""
        self.socket.send(flight)
        answer = self.socket.recv(65535)
        self.connection.bio_write(answer)
        return answer

    def open_session(self) -> bytes:
        """Complete the cookie round and send the second ClientHello.

        Returns that ClientHello. The gateway now has a session in the
        handshaking state for this peer, and nothing more is sent.
        """
        hello = self.next_flight()
        verify_request = self.exchange(hello)
        assert verify_request[13] == records.HANDSHAKE_HELLO_VERIFY_REQUEST
        second_hello = self.next_flight()
        self.exchange(second_hello)
        return second_hello

    def finish(self, timeout: float = 5.0) -> None:
        """Send flights and feed the replies until the handshake completes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.connection.do_handshake()
            except SSL.WantReadError:
                pass
            else:
                return
            self.send_pending()
            for datagram in receive_all(self.socket, 0.1):
                self.connection.bio_write(datagram)
        raise TimeoutError(f"the handshake did not complete in {timeout} s")

    def send_pending(self) -> list[bytes]:
        """Send what OpenSSL has written, packed to the MTU, and return it."""
        chunks = []
        while True:
            try:
                chunk = self.connection.bio_read(65535)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        datagrams = records.pack_datagrams(b"".join(chunks), MTU)
        for datagram in datagrams:
            self.socket.send(datagram)
        return datagrams

    def close(self) -> None:
        """Release the socket without telling the gateway."""
        self.socket.close()


Filter = Callable[[int, bytes], bool]


def is_application_data(datagram: bytes) -> bool:
    """Tell whether a datagram opens with a DTLS application-data record.

    Handshake retransmissions that were still in flight when a test
    armed a filter start with other record types, so filters and counts
    that look only at application data are not thrown off by them.
    """
    return bool(datagram) and datagram[0] == records.CONTENT_APPLICATION_DATA


def drop_first_application_data() -> Filter:
    """Return a filter that drops the next application-data datagram only."""
    dropped: list[bytes] = []

    def drop(index: int, datagram: bytes) -> bool:
        if dropped or not is_application_data(datagram):
            return False
        dropped.append(datagram)
        return True

    return drop


class UdpRelay:
    """Forwards datagrams between one client and the gateway in a thread.

    ``drop_to_server`` and ``drop_to_client`` get each datagram's index in
    its direction and the datagram, and return True to drop it. Every
    forwarded or dropped datagram is recorded.
    """

    def __init__(self, server_port: int) -> None:
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind((LOOPBACK, 0))
        self.back = udp_socket(server_port)
        self.to_server: list[bytes] = []
        self.to_client: list[bytes] = []
        self.drop_to_server: Filter | None = None
        self.drop_to_client: Filter | None = None
        self._client: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._forward, name="udp-relay")
        self._thread.start()

    @property
    def port(self) -> int:
        """The port clients send to."""
        return int(self.front.getsockname()[1])

    def inject_to_server(self, datagram: bytes) -> None:
        """Send ``datagram`` to the gateway from the relay's client-facing side."""
        self.back.send(datagram)

    def close(self) -> None:
        """Stop forwarding and release both sockets."""
        self._stop.set()
        self._thread.join(5.0)
        self.front.close()
        self.back.close()

    def _forward(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.front, selectors.EVENT_READ)
        selector.register(self.back, selectors.EVENT_READ)
        deadline = time.monotonic() + RELAY_LIFETIME
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for key, _ in selector.select(RELAY_POLL):
                    if key.fileobj is self.front:
                        self._from_client()
                    else:
                        self._from_server()
        finally:
            selector.close()

    def _from_client(self) -> None:
        datagram, address = self.front.recvfrom(65535)
        self._client = address
        index = len(self.to_server)
        self.to_server.append(datagram)
        if self.drop_to_server is None or not self.drop_to_server(index, datagram):
            self.back.send(datagram)

    def _from_server(self) -> None:
        try:
            datagram = self.back.recv(65535)
        except ConnectionRefusedError:
            return  # the gateway stopped; the test will notice
        index = len(self.to_client)
        self.to_client.append(datagram)
        dropped = self.drop_to_client is not None and self.drop_to_client(
            index, datagram
        )
        if self._client is not None and not dropped:
            self.front.sendto(datagram, self._client)
