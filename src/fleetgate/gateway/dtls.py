"""The DTLS 1.2 listener: one UDP socket, many sessions, OpenSSL in memory.

Each peer address owns at most one established :class:`DtlsSession`.
OpenSSL runs its handshake over memory BIOs: the listener reads
datagrams, feeds them to the session of their source address, and sends
whatever OpenSSL writes back, packed into datagrams no larger than the
MTU. Once the handshake completes with an AEAD suite, the session seals
and opens its records itself (:mod:`fleetgate.gateway.protection`) and
frees the OpenSSL connection, which would otherwise hold about 80 KiB
per idle session (measured with ``bench/memory.py``). The server's last
flight is kept (a few dozen bytes) until the peer proves it arrived,
and sent again when the peer repeats its own last flight (RFC 6347
4.2.4). Renegotiation is rejected with a no_renegotiation warning
alert.

A ClientHello with a valid cookie from the address of an established
session starts a new handshake beside it, and the new session replaces
the old one only when its handshake completes (RFC 6347 4.2.8).

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
import struct
import time
from collections.abc import Callable
from typing import Protocol, cast

from OpenSSL import SSL

from fleetgate.errors import Reason
from fleetgate.gateway import protection, records
from fleetgate.gateway.tls import check_finished_received, session_identity

log = logging.getLogger(__name__)

Address = tuple[str, int]

# TLS alerts (RFC 5246 7.2, RFC 5746 4.4).
ALERT_LEVEL_WARNING = 1
ALERT_LEVEL_FATAL = 2
ALERT_CLOSE_NOTIFY = 0
ALERT_NO_RENEGOTIATION = 100


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
    """One peer's DTLS connection: OpenSSL for the handshake, then records.

    OpenSSL runs the handshake over memory BIOs. When it completes with
    an AEAD suite, :mod:`fleetgate.gateway.protection` takes over the
    record layer and the OpenSSL connection is freed.
    """

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
        # The identity the certificate verifier attached to the handshake
        # (the verified device), set once the handshake completes.
        self.peer_identity: object | None = None
        # The negotiated suite's OpenSSL name, set with peer_identity.
        self.cipher: str | None = None
        # Set by the application once the session is bound to a device.
        self.application_state: object | None = None

        self._connection: SSL.Connection | None = SSL.Connection(context, None)
        self._connection.set_app_data(self)
        self._connection.set_accept_state()
        self._connection.set_ciphertext_mtu(listener.mtu)
        self._listening = True
        self._timer: asyncio.TimerHandle | None = None
        # Highest epoch 1 record sequence number fed to OpenSSL.
        self._highest_received = -1
        self._protection: protection.RecordProtection | None = None
        # Dropped once the peer sends a protected record, which proves it
        # received the flight.
        self._final_flight: protection.FinalFlight | None = None

    @property
    def connection(self) -> SSL.Connection | None:
        """The pyOpenSSL connection, until the session runs its own records."""
        return self._connection

    def feed(self, datagram: bytes) -> bool:
        """Process one datagram from the peer.

        Returns True when the datagram held a record that authenticated
        under this session's own record layer. A session still on
        OpenSSL cannot tell, and returns False.
        """
        self.last_activity = time.monotonic()
        if self._protection is not None:
            return self._open_records(self._protection, datagram)
        connection = self._connection
        if connection is None:
            return False
        finished = False
        if self.state is SessionState.HANDSHAKING:
            finished = self._note_received_sequences(datagram)
        connection.bio_write(datagram)
        if self.state is SessionState.HANDSHAKING:
            self._advance_handshake(connection)
            if finished and self.state is SessionState.HANDSHAKING:
                # A PSK handshake still running after the client's
                # Finished means the Finished did not decrypt.
                check_finished_received(connection)
        if self.state is SessionState.ESTABLISHED and self._protection is None:
            self._read_application_data(connection)
        if self._connection is not None:
            self.flush()
        return False

    def send(self, payload: bytes) -> None:
        """Encrypt ``payload`` as one record and send it to the peer."""
        if self.state is not SessionState.ESTABLISHED:
            return
        if self._protection is not None:
            self._send_record(records.CONTENT_APPLICATION_DATA, payload)
            return
        assert self._connection is not None
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
            self._send_close_notify()
        self._cancel_timer()
        previous = self.state
        self.state = SessionState.CLOSED
        self.listener.session_ended(
            self, was_established=(previous is SessionState.ESTABLISHED)
        )
        # Break the session <-> connection <-> application cycles now: the
        # cycle collector does not see OpenSSL's native memory (tens of KB
        # per connection), so it would run far too rarely to reclaim it.
        if self._connection is not None:
            self._connection.set_app_data(None)
            self._connection = None
        self._protection = None
        self._final_flight = None
        self.application_state = None

    def flush(self) -> bytes:
        """Send every record OpenSSL has written, packed to the MTU.

        Returns the bytes sent, so that the final flight can be kept.
        """
        if self._connection is None:
            return b""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._connection.bio_read(65536)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        if not chunks:
            return b""
        flight = b"".join(chunks)
        for datagram in records.pack_datagrams(flight, self.listener.mtu):
            self.listener.sendto(datagram, self.address)
        return flight

    def _peer(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def _advance_handshake(self, connection: SSL.Connection) -> None:
        try:
            if self._listening:
                # DTLSv1_listen checks the cookie through the context's
                # callback and aligns the handshake message sequence with
                # the HelloVerifyRequest already sent (RFC 6347 4.2.2).
                connection.DTLSv1_listen()
                self._listening = False
            connection.do_handshake()
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
        self.peer_identity = session_identity(connection)
        self.cipher = connection.get_cipher_name()
        self._leave_openssl(connection, self.flush())
        self.listener.handshake_completed(self)

    def _leave_openssl(self, connection: SSL.Connection, sent_flight: bytes) -> None:
        """Move to this session's own record layer and free OpenSSL."""
        switchover = protection.take_over(
            connection, sent_flight, self._highest_received
        )
        if switchover is None:
            # NOTE: a suite that protection.py does not implement, such as
            # a CBC suite, keeps its OpenSSL connection and with it about
            # 80 KiB per idle session.
            log.debug(
                "session keeps OpenSSL peer=%s cipher=%s", self._peer(), self.cipher
            )
            return
        self._protection = switchover.protection
        self._final_flight = switchover.final_flight
        connection.set_app_data(None)
        self._connection = None

    def _note_received_sequences(self, datagram: bytes) -> bool:
        """Track the peer's sequence numbers; tell whether a Finished arrived.

        A handshake record after epoch 0 is the client's Finished.
        """
        finished = False
        for record in records.iter_records(datagram):
            epoch, high, low = struct.unpack_from("!HHI", record, 3)
            if epoch == protection.FIRST_EPOCH:
                self._highest_received = max(self._highest_received, high << 32 | low)
            if epoch != 0 and record[0] == records.CONTENT_HANDSHAKE:
                finished = True
        return finished

    def _open_records(
        self, layer: protection.RecordProtection, datagram: bytes
    ) -> bool:
        authenticated = False
        for record in records.iter_records(datagram):
            opened = layer.open(record)
            if opened is None:
                continue  # dropped silently (RFC 6347 4.1.2.7)
            authenticated = True
            content_type, plaintext = opened
            if content_type == records.CONTENT_APPLICATION_DATA:
                self._final_flight = None
                self.listener.application.datagram_received(self, plaintext)
            elif content_type == records.CONTENT_ALERT:
                self._final_flight = None
                self._alert_received(plaintext)
            elif content_type == records.CONTENT_HANDSHAKE:
                self._handshake_received(plaintext)
            if self.state is not SessionState.ESTABLISHED:
                break
        return authenticated

    def _alert_received(self, alert: bytes) -> None:
        if len(alert) != 2:
            return
        level, description = alert
        if description == ALERT_CLOSE_NOTIFY:
            log.debug("peer closed session peer=%s", self._peer())
            # RFC 5246 7.2.1: reply to close_notify with close_notify.
            self.close(notify=True)
        elif level == ALERT_LEVEL_FATAL:
            log.debug(
                "peer sent fatal alert peer=%s alert=%d", self._peer(), description
            )
            self.close(notify=False)

    def _handshake_received(self, message: bytes) -> None:
        if not message:
            return
        if message[0] == records.HANDSHAKE_FINISHED:
            # The client's last flight again: ours was lost (RFC 6347 4.2.4).
            if self._final_flight is not None and self._protection is not None:
                try:
                    datagram = self._final_flight.datagram(self._protection)
                except protection.SequenceExhausted:
                    self.close(notify=False)
                    return
                self.listener.sendto(datagram, self.address)
        elif message[0] == records.HANDSHAKE_CLIENT_HELLO:
            # Renegotiation is rejected with a warning alert (RFC 5746 4.4).
            log.debug("renegotiation rejected peer=%s", self._peer())
            self._send_record(
                records.CONTENT_ALERT,
                bytes([ALERT_LEVEL_WARNING, ALERT_NO_RENEGOTIATION]),
            )

    def _send_record(self, content_type: int, payload: bytes) -> None:
        assert self._protection is not None
        try:
            record = self._protection.seal(content_type, payload)
        except protection.SequenceExhausted:
            # RFC 6347 4.1: abandon the association rather than wrap; the
            # device connects again with a new handshake.
            log.info("session sequence numbers used up peer=%s", self._peer())
            self.close(notify=False)
            return
        except ValueError as exc:
            log.error("cannot send record peer=%s error=%s", self._peer(), exc)
            return
        self.listener.sendto(record, self.address)

    def _send_close_notify(self) -> None:
        if self._protection is not None:
            alert = bytes([ALERT_LEVEL_WARNING, ALERT_CLOSE_NOTIFY])
            with contextlib.suppress(protection.SequenceExhausted):
                record = self._protection.seal(records.CONTENT_ALERT, alert)
                self.listener.sendto(record, self.address)
        elif self._connection is not None:
            with contextlib.suppress(SSL.Error):
                self._connection.shutdown()
            self.flush()

    def _read_application_data(self, connection: SSL.Connection) -> None:
        while self.state is SessionState.ESTABLISHED:
            try:
                payload = connection.recv(65536)
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
        if self._connection is None:
            return
        delay = self._connection.DTLSv1_get_timeout()
        if delay is None:
            return
        loop = self.listener.loop
        self._timer = loop.call_later(max(delay, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.state is not SessionState.HANDSHAKING or self._connection is None:
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
        # Handshakes that will replace the established session of their
        # address once they complete (RFC 6347 4.2.8).
        self.replacements: dict[Address, DtlsSession] = {}
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

        if hello is None:
            if session is not None:
                self._route(session, address, data)
            # Otherwise neither a session nor a ClientHello: stray or
            # spoofed data.
            return
        replacement = self.replacements.get(address)
        for existing in (session, replacement):
            if existing is not None and hello.random == existing.client_random:
                # The ClientHello that opened this session, again. During
                # the handshake it is a retransmission, and OpenSSL repeats
                # its flight (RFC 6347 4.2.4). Afterwards it is a late copy
                # whose cookie is still valid, but it starts no new
                # connection.
                if existing.state is SessionState.HANDSHAKING:
                    existing.feed(data)
                return

        # Any other ClientHello opens a new connection, even from the
        # address of a session, as a device restarting its handshake does.
        if not hello.cookie or not self.cookies.check(address, hello.cookie):
            cookie = self.cookies.issue(address)
            self.sendto(records.hello_verify_request(hello, cookie), address)
            return
        if replacement is not None:
            replacement.close(notify=False)
        replaces = session is not None and session.state is SessionState.ESTABLISHED
        if session is not None and not replaces:
            session.close(notify=False)  # a handshake that never finished
        if not self._has_room(address):
            return
        session = DtlsSession(self, self.context, address, client_random=hello.random)
        if replaces:
            # RFC 6347 4.2.8: the established session stays until the new
            # handshake completes, so a device that restarts its handshake
            # and gives up keeps its old session.
            self.replacements[address] = session
        else:
            self.sessions[address] = session
        self._handshakes_by_host[address[0]] += 1
        session.feed(data)

    def _route(self, session: DtlsSession, address: Address, data: bytes) -> None:
        """Feed a datagram that is not a ClientHello to the session it is for."""
        replacement = self.replacements.get(address) if self.replacements else None
        if replacement is None:
            session.feed(data)
            return
        # A new handshake runs beside an established session. Epoch 0
        # records belong to the handshake. Later epochs belong to the
        # established session unless it cannot authenticate them, as with
        # the new handshake's Finished.
        epoch = int.from_bytes(data[3:5], "big")
        if epoch == 0 or not session.feed(data):
            replacement.feed(data)

    def _has_room(self, address: Address) -> bool:
        """Tell whether a new handshake from ``address`` may start, logging if not."""
        if len(self.sessions) + len(self.replacements) >= self.max_sessions:
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
            return False
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
            return False
        return True

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
        address = session.address
        if self.replacements.get(address) is session:
            del self.replacements[address]
            previous = self.sessions.get(address)
            if previous is not None:
                previous.close(notify=False)
            self.sessions[address] = session
        log.debug(
            "handshake completed peer=%s:%s cipher=%s",
            address[0],
            address[1],
            session.cipher,
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
        elif self.replacements.get(session.address) is session:
            del self.replacements[session.address]
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
        for session in [*self.sessions.values(), *self.replacements.values()]:
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
        for session in [*self.sessions.values(), *self.replacements.values()]:
            session.close(notify=True)
        if self._transport is not None:
            self._transport.close()
