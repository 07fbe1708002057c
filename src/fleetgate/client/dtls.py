"""The device side of DTLS 1.2: one session over a connected UDP socket.

OpenSSL runs over memory BIOs and this module moves datagrams between
them and the socket, as the gateway does on its side. What OpenSSL
writes at once (a whole flight) is split into records and packed into
datagrams no larger than the MTU, because with ``OP_NO_QUERY_MTU`` it
does not learn the path MTU itself. Handshake retransmission follows
OpenSSL's timer (``DTLSv1_get_timeout``/``DTLSv1_handle_timeout``,
RFC 6347 4.2.4), and OpenSSL repeats the ClientHello with the cookie
of a HelloVerifyRequest itself.

Limitations: no session resumption and no Connection ID (RFC 9146). A
session ends when the server forgets it (idle timeout, restart),
and the caller then connects again with a new channel. A channel is not
thread-safe.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import time

from OpenSSL import SSL

from fleetgate.client.context import HandshakeReport, is_ip_address, openssl_reasons
from fleetgate.client.errors import (
    HandshakeFailed,
    HandshakeRefused,
    HandshakeTimeout,
    ServerNotTrusted,
    ServerUnreachable,
    SessionClosed,
)
from fleetgate.gateway.records import pack_datagrams

# The IANA default port of coaps (RFC 7252 12.7).
COAPS_PORT = 5684
# 1280 bytes, the IPv6 minimum MTU, minus the IPv6 and UDP headers.
DEFAULT_MTU = 1232
# Largest UDP payload, so that no datagram is truncated on receipt.
MAX_DATAGRAM = 65535


class ChannelState(enum.Enum):
    """Lifecycle of a :class:`DtlsChannel`."""

    CREATED = "created"
    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"
    CLOSED = "closed"


class DtlsChannel:
    """One DTLS 1.2 session from a device to a server over a connected UDP socket."""

    def __init__(
        self,
        context: SSL.Context,
        host: str,
        port: int = COAPS_PORT,
        *,
        server_hostname: str | None = None,
        mtu: int = DEFAULT_MTU,
        source_address: tuple[str, int] | None = None,
    ) -> None:
        if mtu < 256:
            raise ValueError(f"mtu must be at least 256 bytes, not {mtu}")
        self.host = host
        self.port = port
        # The name the server certificate must carry: what was dialled.
        self.server_hostname = host if server_hostname is None else server_hostname
        self.mtu = mtu
        self.state = ChannelState.CREATED
        self._context = context
        self._source_address = source_address
        self._socket: socket.socket | None = None
        self._connection: SSL.Connection | None = None
        self._report = HandshakeReport(self.server_hostname)

    @property
    def peer(self) -> str:
        """The server as ``host:port``, for messages."""
        return f"{self.host}:{self.port}"

    @property
    def local_address(self) -> tuple[str, int]:
        """The bound UDP address of this side."""
        sock = self._require_socket()
        name = sock.getsockname()
        return str(name[0]), int(name[1])

    def fileno(self) -> int:
        """The UDP socket's file descriptor, for ``selectors`` over many channels."""
        return self._require_socket().fileno()

    @property
    def cipher(self) -> str | None:
        """The negotiated cipher suite (OpenSSL name), once established."""
        if self._connection is None or self.state is not ChannelState.ESTABLISHED:
            return None
        return self._connection.get_cipher_name()

    def connect(self, timeout: float) -> None:
        """Open the socket and complete the handshake within ``timeout`` seconds."""
        if self.state is not ChannelState.CREATED:
            raise RuntimeError(f"cannot connect: the channel is {self.state.value}")
        deadline = time.monotonic() + timeout
        self.state = ChannelState.HANDSHAKING
        try:
            self._socket = self._open_socket()
            connection = SSL.Connection(self._context, None)
            connection.set_app_data(self._report)
            connection.set_connect_state()
            connection.set_ciphertext_mtu(self.mtu)
            if not is_ip_address(self.server_hostname):
                # SNI carries DNS names only (RFC 6066 3).
                connection.set_tlsext_host_name(self.server_hostname.encode("idna"))
            self._connection = connection
            self._run_handshake(deadline, timeout)
        except BaseException:
            self._abort()
            raise
        self.state = ChannelState.ESTABLISHED

    def send(self, payload: bytes) -> None:
        """Encrypt ``payload`` as one record and send it."""
        connection = self._require_established()
        try:
            connection.send(payload)
        except SSL.Error as exc:
            self._abort()
            raise SessionClosed(
                f"cannot send to {self.peer}: {openssl_reasons(exc)}",
                alert=self._report.alert,
            ) from exc
        self._flush()

    def receive(self, timeout: float) -> bytes | None:
        """Return the next decrypted record, or None if none came in ``timeout``.

        A ``timeout`` of 0 only takes what has already arrived. Raises
        SessionClosed when the server ends the session.
        """
        connection = self._require_established()
        deadline = time.monotonic() + timeout
        while True:
            record = self._read_record(connection)
            if record is not None:
                return record
            datagram = self._receive_datagram(deadline - time.monotonic())
            if datagram is None:
                return None
            connection.bio_write(datagram)
            # Replies OpenSSL owes the peer, such as a retransmitted last
            # flight when our Finished was lost (RFC 6347 4.2.4).
            self._flush()

    def close(self) -> None:
        """Send close_notify if established, then release the socket."""
        if self.state is ChannelState.CLOSED:
            return
        if self.state is ChannelState.ESTABLISHED and self._connection is not None:
            try:
                self._connection.shutdown()
                self._flush()
            except (SSL.Error, OSError, ServerUnreachable):
                pass  # the peer is gone, so nobody is left to notify
        self._abort()

    def abort(self) -> None:
        """Release the socket at once, without sending close_notify.

        The server keeps its side of the session until its idle timeout
        or until a new handshake from the same address replaces it.
        """
        self._abort()

    def __repr__(self) -> str:
        return f"<DtlsChannel {self.peer} {self.state.value}>"

    # Handshake

    def _run_handshake(self, deadline: float, timeout: float) -> None:
        connection = self._require_connection()
        while True:
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as exc:
                self._flush_quietly()  # deliver the alert OpenSSL wrote
                raise self._handshake_error(exc) from exc
            else:
                self._flush()
                return
            self._flush()

            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HandshakeTimeout(
                    f"cannot connect to {self.peer}: the handshake timed out "
                    f"after {timeout:g} s"
                )
            retransmit_in = connection.DTLSv1_get_timeout()
            wait = remaining if retransmit_in is None else min(retransmit_in, remaining)
            datagram = self._receive_datagram(wait)
            if datagram is not None:
                connection.bio_write(datagram)
            elif retransmit_in is not None and retransmit_in <= remaining:
                self._handle_retransmission_timer(connection)

    def _handle_retransmission_timer(self, connection: SSL.Connection) -> None:
        try:
            connection.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            # OpenSSL gives up after its own retransmission limit.
            raise HandshakeTimeout(
                f"cannot connect to {self.peer}: {openssl_reasons(exc)}"
            ) from exc

    def _handshake_error(self, exc: SSL.Error) -> HandshakeFailed:
        alert = self._report.alert
        if alert is not None:
            return HandshakeRefused(
                f"cannot connect to {self.peer}: the server refused the "
                f"handshake with alert {alert}",
                alert=alert,
            )
        if self._report.rejection is not None:
            reason, depth = self._report.rejection
            return ServerNotTrusted(
                f"cannot connect to {self.peer}: the server certificate at "
                f"depth {depth} is not trusted: {reason}",
                reason=reason,
                depth=depth,
            )
        return HandshakeFailed(f"cannot connect to {self.peer}: {openssl_reasons(exc)}")

    # Records and datagrams

    def _read_record(self, connection: SSL.Connection) -> bytes | None:
        try:
            return connection.recv(MAX_DATAGRAM)
        except SSL.WantReadError:
            return None
        except SSL.ZeroReturnError as exc:
            self.close()  # reply to close_notify with ours (RFC 5246 7.2.1)
            raise SessionClosed(
                f"cannot read from {self.peer}: the server closed the session",
                alert="close_notify",
            ) from exc
        except SSL.Error as exc:
            alert = self._report.alert
            self._abort()
            detail = f"alert {alert}" if alert else openssl_reasons(exc)
            raise SessionClosed(
                f"cannot read from {self.peer}: the session failed: {detail}",
                alert=alert,
            ) from exc

    def _receive_datagram(self, wait: float) -> bytes | None:
        sock = self._require_socket()
        # A zero timeout makes the socket non-blocking: only queued data.
        sock.settimeout(max(wait, 0.0))
        try:
            return sock.recv(MAX_DATAGRAM)
        except (TimeoutError, BlockingIOError):
            return None
        except ConnectionRefusedError as exc:
            raise ServerUnreachable(
                f"cannot reach {self.peer}: nothing listens on that UDP port"
            ) from exc

    def _flush(self) -> None:
        connection = self._require_connection()
        chunks: list[bytes] = []
        while True:
            try:
                chunk = connection.bio_read(MAX_DATAGRAM)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        if not chunks:
            return
        sock = self._require_socket()
        for datagram in pack_datagrams(b"".join(chunks), self.mtu):
            try:
                sock.send(datagram)
            except ConnectionRefusedError as exc:
                raise ServerUnreachable(
                    f"cannot reach {self.peer}: nothing listens on that UDP port"
                ) from exc

    def _flush_quietly(self) -> None:
        # The failure being reported matters more than delivering its alert.
        with contextlib.suppress(OSError, ServerUnreachable):
            self._flush()

    def _open_socket(self) -> socket.socket:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_DGRAM
            )[0]
        except socket.gaierror as exc:
            raise ServerUnreachable(
                f"cannot resolve {self.host!r}: {exc.strerror}"
            ) from exc
        sock = socket.socket(family, kind, proto)
        try:
            if self._source_address is not None:
                sock.bind(self._source_address)
            # A connected socket only takes datagrams from the server and
            # reports ICMP port unreachable as ConnectionRefusedError.
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock

    def _abort(self) -> None:
        self.state = ChannelState.CLOSED
        if self._socket is not None:
            self._socket.close()

    def _require_socket(self) -> socket.socket:
        if self._socket is None:
            raise RuntimeError("cannot use the channel: it is not connected")
        return self._socket

    def _require_connection(self) -> SSL.Connection:
        if self._connection is None:
            raise RuntimeError("cannot use the channel: it is not connected")
        return self._connection

    def _require_established(self) -> SSL.Connection:
        if self.state is not ChannelState.ESTABLISHED:
            raise RuntimeError(
                f"cannot exchange records: the channel is {self.state.value}"
            )
        return self._require_connection()
