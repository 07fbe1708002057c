"""The DTLS 1.2 listener: one UDP socket, many sessions, OpenSSL in memory.

Each peer address owns at most one :class:`DtlsSession`, which wraps a
pyOpenSSL connection over memory BIOs. The listener reads datagrams,
feeds them to the session of their source address, and sends whatever
OpenSSL writes back, packed into datagrams no larger than the MTU.

Before any per-client state exists, a ClientHello must carry a cookie
bound to its source address (RFC 6347 section 4.2.1); see
:mod:`fleetgate.gateway.records`. Sessions are bounded in number, closed
after an idle period, and a handshake that does not finish in time is
dropped. Retransmission follows OpenSSL's own timers.

Limitations: no DTLS 1.3 and no Connection ID (RFC 9146), because the
OpenSSL binding used does not expose them. A device whose NAT binding
changes therefore needs a new handshake. Session resumption is off, so
every connection is a full handshake with a fresh chain verification.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from typing import Protocol, cast

from OpenSSL import SSL

from fleetgate.errors import Reason
from fleetgate.gateway import records

log = logging.getLogger(__name__)

Address = tuple[str, int]


def _openssl_reason(exc: SSL.Error) -> str:
    """Return the reason text of OpenSSL's last error, or the whole message."""
    errors = exc.args[0] if exc.args else None
    if isinstance(errors, list) and errors and isinstance(errors[-1], tuple):
        return str(errors[-1][-1])
    return str(exc)


class SessionState(enum.Enum):
    """Lifecycle of a DTLS session."""

    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"
    CLOSED = "closed"


class DtlsApplication(Protocol):
    """The layer on top of established sessions (the CoAP endpoint)."""

    def session_established(self, session: DtlsSession) -> None:
        """Start serving ``session``; its peer has been verified."""

    def datagram_received(self, session: DtlsSession, payload: bytes) -> None:
        """Handle one decrypted application-data record."""

    def session_closed(self, session: DtlsSession) -> None:
        """Forget ``session``; it will deliver no more data."""


class DtlsSession:
    """One peer's DTLS connection, driven through memory BIOs."""

    def __init__(
        self,
        listener: DtlsListener,
        context: SSL.Context,
        address: Address,
        *,
        client_random: bytes = b"",
    ) -> None:
        self.listener = listener
        self.address = address
        # The random of the ClientHello that opened the session.
        self.client_random = client_random
        self.state = SessionState.HANDSHAKING
        self.started_at = time.monotonic()
        self.last_activity = self.started_at
        # Filled by the certificate verification callback: an object the
        # application understands (the verified device identity).
        self.peer_identity: object | None = None
        # Set by the application once the session is bound to a device.
        self.application_state: object | None = None

        self._connection = SSL.Connection(context, None)
        self._connection.set_app_data(self)
        self._connection.set_accept_state()
        self._connection.set_ciphertext_mtu(listener.mtu)
        self._listening = True
        self._timer: asyncio.TimerHandle | None = None

    @property
    def connection(self) -> SSL.Connection:
        """The underlying pyOpenSSL connection."""
        return self._connection

    def feed(self, datagram: bytes) -> None:
        """Process one datagram from the peer."""
        self.last_activity = time.monotonic()
        self._connection.bio_write(datagram)
        if self.state is SessionState.HANDSHAKING:
            self._advance_handshake()
        if self.state is SessionState.ESTABLISHED:
            self._read_application_data()
        self.flush()

    def send(self, payload: bytes) -> None:
        """Encrypt ``payload`` as one record and send it to the peer."""
        if self.state is not SessionState.ESTABLISHED:
            return
        try:
            self._connection.send(payload)
        except SSL.Error as exc:
            log.debug("send failed peer=%s error=%s", self._peer(), exc)
            self.close(notify=False)
            return
        self.flush()

    def close(self, *, notify: bool = True) -> None:
        """End the session, sending close_notify when ``notify`` is set."""
        if self.state is SessionState.CLOSED:
            return
        if notify and self.state is SessionState.ESTABLISHED:
            with contextlib.suppress(SSL.Error):
                self._connection.shutdown()
            self.flush()
        self._cancel_timer()
        previous = self.state
        self.state = SessionState.CLOSED
        self.listener.session_ended(
            self, was_established=(previous is SessionState.ESTABLISHED)
        )
        # Break the session <-> connection <-> application cycles now: the
        # cycle collector does not see OpenSSL's native memory (tens of KB
        # per connection), so it would run far too rarely to reclaim it.
        self._connection.set_app_data(None)
        self.application_state = None

    def flush(self) -> None:
        """Send every record OpenSSL has written, packed to the MTU."""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._connection.bio_read(65536)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        if chunks:
            flight = b"".join(chunks)
            for datagram in records.pack_datagrams(flight, self.listener.mtu):
                self.listener.sendto(datagram, self.address)

    def _peer(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def _advance_handshake(self) -> None:
        try:
            if self._listening:
                # DTLSv1_listen checks the cookie through the context's
                # callback and aligns the handshake message sequence with
                # the HelloVerifyRequest already sent (RFC 6347 4.2.2).
                self._connection.DTLSv1_listen()
                self._listening = False
            self._connection.do_handshake()
        except SSL.WantReadError:
            self._schedule_retransmission()
            return
        except SSL.Error as exc:
            self.flush()  # deliver the alert OpenSSL wrote
            self.listener.handshake_failed(self, exc)
            self.close(notify=False)
            return
        self._cancel_timer()
        self.state = SessionState.ESTABLISHED
        self.listener.handshake_completed(self)

    def _read_application_data(self) -> None:
        while self.state is SessionState.ESTABLISHED:
            try:
                payload = self._connection.recv(65536)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                log.debug("peer closed session peer=%s", self._peer())
                self.close(notify=False)
                return
            except SSL.Error as exc:
                log.debug("session error peer=%s error=%s", self._peer(), exc)
                self.close(notify=False)
                return
            self.listener.application.datagram_received(self, payload)

    def _schedule_retransmission(self) -> None:
        self._cancel_timer()
        delay = self._connection.DTLSv1_get_timeout()
        if delay is None:
            return
        loop = self.listener.loop
        self._timer = loop.call_later(max(delay, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.state is not SessionState.HANDSHAKING:
            return
        try:
            self._connection.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self.listener.handshake_failed(self, exc)
            self.close(notify=False)
            return
        self.flush()
        self._schedule_retransmission()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class DtlsListener(asyncio.DatagramProtocol):
    """Accepts DTLS sessions on one UDP socket and feeds them to an application."""

    def __init__(
        self,
        context: SSL.Context,
        application: DtlsApplication,
        *,
        mtu: int,
        max_sessions: int,
        max_handshakes_per_address: int = 256,
        idle_timeout: float,
        handshake_timeout: float,
        on_refused: Callable[[DtlsSession, Exception], None] | None = None,
    ) -> None:
        self.context = context
        self.application = application
        self.mtu = mtu
        self.max_sessions = max_sessions
        self.max_handshakes_per_address = max_handshakes_per_address
        # Handshakes in progress per source IP address, so that one host
        # cannot fill the session table with handshakes it never finishes.
        self._handshakes_by_host: collections.Counter[str] = collections.Counter()
        self._dropped_busy_host = 0
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.cookies = records.CookieJar()
        self.sessions: dict[Address, DtlsSession] = {}
        self.loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._on_refused = on_refused
        self._dropped_full = 0

    # asyncio.DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._sweeper = self.loop.create_task(
            self._sweep_forever(), name="fleetgate-dtls-sweeper"
        )

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not data:
            return  # an empty datagram carries no record (RFC 6347 4.1)
        address: Address = (str(addr[0]), int(addr[1]))
        session = self.sessions.get(address)
        hello = records.parse_client_hello(data)

        if session is not None and hello is None:
            session.feed(data)
            return
        if hello is None:
            # Neither a session nor a ClientHello: stray or spoofed data.
            return
        if session is not None and hello.random == session.client_random:
            # The ClientHello that opened this session, again. During the
            # handshake it is a retransmission, and OpenSSL repeats its
            # flight (RFC 6347 4.2.4). Afterwards it is a late copy whose
            # cookie is still valid, but it starts no new connection.
            if session.state is SessionState.HANDSHAKING:
                session.feed(data)
            return

        # Any other ClientHello opens a new connection, even from the
        # address of a session, as a device restarting its handshake does.
        if not hello.cookie or not self.cookies.check(address, hello.cookie):
            cookie = self.cookies.issue(address)
            self.sendto(records.hello_verify_request(hello, cookie), address)
            return
        if session is not None:
            # The cookie proves the peer owns the address, so the new
            # connection replaces the old one (RFC 6347 4.2.8).
            session.close(notify=False)
        if len(self.sessions) >= self.max_sessions:
            self._dropped_full += 1
            if self._dropped_full in (1, 10, 100) or self._dropped_full % 1000 == 0:
                log.warning(
                    "session table full, handshake dropped peer=%s:%s "
                    "max_sessions=%d dropped=%d",
                    address[0],
                    address[1],
                    self.max_sessions,
                    self._dropped_full,
                )
            return
        host = address[0]
        if self._handshakes_by_host[host] >= self.max_handshakes_per_address:
            self._dropped_busy_host += 1
            if self._dropped_busy_host in (1, 10, 100) or (
                self._dropped_busy_host % 1000 == 0
            ):
                log.warning(
                    "too many handshakes in progress from one address, "
                    "handshake dropped peer=%s:%s max_handshakes_per_address=%d "
                    "dropped=%d",
                    address[0],
                    address[1],
                    self.max_handshakes_per_address,
                    self._dropped_busy_host,
                )
            return
        session = DtlsSession(self, self.context, address, client_random=hello.random)
        self.sessions[address] = session
        self._handshakes_by_host[host] += 1
        session.feed(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    # Callbacks from sessions

    def sendto(self, datagram: bytes, address: Address) -> None:
        """Send one datagram, silently dropping it once the socket is closed."""
        if self._transport is not None:
            self._transport.sendto(datagram, address)

    def handshake_completed(self, session: DtlsSession) -> None:
        """Hand a freshly established session to the application."""
        self._handshake_finished(session)
        log.debug(
            "handshake completed peer=%s:%s cipher=%s",
            session.address[0],
            session.address[1],
            session.connection.get_cipher_name(),
        )
        self.application.session_established(session)

    def handshake_failed(self, session: DtlsSession, exc: SSL.Error) -> None:
        """Log a failed handshake unless the chain verifier already did.

        The peer has proven its address with a cookie, so each failure is
        a real client being turned away: a missing client certificate, a
        key that does not match the certificate, no shared cipher suite.
        """
        if self._on_refused is not None:
            self._on_refused(session, exc)
            return
        if getattr(session, "tls_verdict", None) is not None:
            return  # refused by the chain verifier, which logged the reason
        detail = _openssl_reason(exc)
        reason = (
            Reason.NO_CLIENT_CERTIFICATE
            if "did not return a certificate" in detail
            else Reason.HANDSHAKE_FAILED
        )
        log.warning(
            "device rejected peer=%s:%s reason=%s error=%s",
            session.address[0],
            session.address[1],
            reason,
            detail,
        )

    def session_ended(self, session: DtlsSession, *, was_established: bool) -> None:
        """Remove a closed session from the table."""
        if not was_established:
            self._handshake_finished(session)
        if self.sessions.get(session.address) is session:
            del self.sessions[session.address]
        if was_established:
            self.application.session_closed(session)

    def _handshake_finished(self, session: DtlsSession) -> None:
        host = session.address[0]
        remaining = self._handshakes_by_host[host] - 1
        if remaining > 0:
            self._handshakes_by_host[host] = remaining
        else:
            self._handshakes_by_host.pop(host, None)

    # Housekeeping

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        """Close sessions idle too long and handshakes that stalled."""
        for session in list(self.sessions.values()):
            if session.state is SessionState.HANDSHAKING:
                if now - session.started_at > self.handshake_timeout:
                    log.debug("handshake timed out peer=%s:%s", *session.address)
                    session.close(notify=False)
            elif now - session.last_activity > self.idle_timeout:
                log.debug("session idle, closing peer=%s:%s", *session.address)
                session.close(notify=True)

    def close(self) -> None:
        """Close every session with close_notify and stop housekeeping."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in list(self.sessions.values()):
            session.close(notify=True)
        if self._transport is not None:
            self._transport.close()
