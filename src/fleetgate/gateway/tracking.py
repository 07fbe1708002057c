"""Connection tracking: the connection log, handshake metrics and clone reports.

:class:`ConnectionTracker` hears of every handshake outcome and session
end, and turns each into a connection log event (see
:mod:`fleetgate.gateway.connection_log`), a metric and, for sessions of
one certificate ID live from two addresses at once, a clone report
(see :mod:`fleetgate.gateway.clones`). It runs on the event loop and
never waits for the database.

Where the events come from: the chain verifier's refusals, through the
gateway; handshakes that fail outside it (no client certificate, no
shared suite), session gauges and the reasons for closing idle sessions
and sessions at shutdown, through :class:`TrackedListener`; association,
authenticated traffic and session ends, through the CoAP endpoint.

A session that the server closes is recorded with the reason it gives
(``quarantined``, ``device_disabled``, ``ca_disabled`` and so on), one
that a new handshake from the same address replaced as
``session_replaced``. Any other end is recorded as ``closed_by_peer``:
the device sent close_notify or an alert, or its records stopped
decrypting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from OpenSSL import SSL

from fleetgate import metrics
from fleetgate.errors import DeviceRejected, Reason
from fleetgate.gateway.clones import CloneDetector
from fleetgate.gateway.connection_log import ConnectionLog
from fleetgate.gateway.dtls import DtlsListener, DtlsSession, SessionState
from fleetgate.gateway.resources import ConnectedDevice
from fleetgate.store.connections import ConnectionResult, NewConnectionEvent

log = logging.getLogger(__name__)

Address = tuple[str, int]

# The labelled children that every accepted connection counts: looking a
# child up by its labels takes longer than the count itself.
_ACCEPTED = metrics.HANDSHAKES.labels(result="accepted", reason="none")
_SESSIONS_CLOSED = {
    reason: metrics.SESSIONS_CLOSED.labels(reason=reason)
    for reason in (Reason.CLOSED_BY_PEER, Reason.SERVER_STOPPED)
}


@dataclasses.dataclass
class _LiveSession:
    device: ConnectedDevice
    fingerprint: str | None
    close_reason: Reason | None = None


class ConnectionTracker:
    """Records handshakes and session ends, and reports likely clones."""

    def __init__(self, connection_log: ConnectionLog, clones: CloneDetector) -> None:
        self.connection_log = connection_log
        self.clones = clones
        self._live: dict[DtlsSession, _LiveSession] = {}
        self.stopping = False

    def chain_rejected(self, address: Address, exc: DeviceRejected) -> None:
        """Record a chain the verifier refused during the handshake."""
        metrics.HANDSHAKES.labels(result="rejected", reason=exc.reason).inc()
        # Without a project that exists the refusal belongs to no tenant:
        # it is counted, not written (see connection_log).
        if exc.project_id is None or exc.reason is Reason.UNKNOWN_PROJECT:
            self.connection_log.unrecorded(exc.reason)
            return
        self.connection_log.record_rejection(
            _event(
                exc.project_id,
                address,
                ConnectionResult.REJECTED,
                reason=exc.reason,
                certificate_id=exc.certificate_id,
                fingerprint=exc.fingerprint,
            )
        )

    def handshake_failed(self, reason: Reason) -> None:
        """Count a handshake that failed before any project was known."""
        metrics.HANDSHAKES.labels(result="rejected", reason=reason).inc()
        self.connection_log.unrecorded(reason)

    def device_associated(
        self, session: DtlsSession, device: ConnectedDevice, identity: object
    ) -> None:
        """Record an accepted handshake, now bound to its device record."""
        fingerprint = getattr(identity, "fingerprint", None)
        self._live[session] = _LiveSession(device, fingerprint)
        self.clones.opened(_key(device), session, session.address)
        _ACCEPTED.inc()
        self.connection_log.record(
            _event(
                device.project_id,
                session.address,
                ConnectionResult.ACCEPTED,
                certificate_id=device.certificate_id,
                device_id=device.device_id,
                fingerprint=fingerprint,
            )
        )

    def device_rejected(
        self, session: DtlsSession, identity: object, exc: DeviceRejected
    ) -> None:
        """Record a verified device refused by its record (disabled, not listed)."""
        metrics.HANDSHAKES.labels(result="rejected", reason=exc.reason).inc()
        project_id = exc.project_id or getattr(identity, "project_id", None)
        if project_id is None:
            self.connection_log.unrecorded(exc.reason)
            return
        self.connection_log.record_rejection(
            _event(
                project_id,
                session.address,
                ConnectionResult.REJECTED,
                reason=exc.reason,
                certificate_id=exc.certificate_id,
                device_id=exc.device_id,
                fingerprint=exc.fingerprint,
            )
        )

    def closing(self, session: DtlsSession, reason: Reason) -> None:
        """Note why the server is about to close ``session``."""
        live = self._live.get(session)
        if live is not None and live.close_reason is None:
            live.close_reason = reason

    def traffic(self, session: DtlsSession) -> None:
        """Note an authenticated record and report a clone it reveals."""
        live = self._live.get(session)
        if live is None:
            return
        for other in self.clones.traffic(_key(live.device), session):
            self._clone_suspected(session, live, other)

    def session_closed(self, session: DtlsSession) -> None:
        """Record the end of an accepted session."""
        live = self._live.pop(session, None)
        if live is None:
            return
        self.clones.closed(_key(live.device), session)
        reason = live.close_reason or (
            Reason.SERVER_STOPPED if self.stopping else Reason.CLOSED_BY_PEER
        )
        closed = _SESSIONS_CLOSED.get(reason)
        if closed is None:
            closed = metrics.SESSIONS_CLOSED.labels(reason=reason)
        closed.inc()
        device = live.device
        self.connection_log.record(
            _event(
                device.project_id,
                session.address,
                ConnectionResult.CLOSED,
                reason=reason,
                certificate_id=device.certificate_id,
                device_id=device.device_id,
                fingerprint=live.fingerprint,
            )
        )

    def _clone_suspected(
        self, session: DtlsSession, live: _LiveSession, other: Address
    ) -> None:
        device = live.device
        metrics.CLONES_SUSPECTED.inc()
        log.warning(
            "clone suspected project=%s cert_id=%s device=%s reason=%s "
            "peer=%s other_peer=%s fingerprint=%s",
            device.project_id,
            device.certificate_id,
            device.device_id,
            Reason.CLONE_SUSPECTED,
            _peer(session.address),
            _peer(other),
            live.fingerprint or "-",
        )
        self.connection_log.record(
            _event(
                device.project_id,
                session.address,
                ConnectionResult.CLONE_SUSPECTED,
                reason=Reason.CLONE_SUSPECTED,
                certificate_id=device.certificate_id,
                device_id=device.device_id,
                fingerprint=live.fingerprint,
                other_peer=_peer(other),
            )
        )


class TrackedListener(DtlsListener):
    """A DTLS listener that reports to a :class:`ConnectionTracker`.

    It adds the session gauges, counts handshakes that fail outside the
    chain verifier, and names why it closes sessions (idle, shutdown).
    """

    def __init__(self, *args: Any, tracker: ConnectionTracker, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracker = tracker
        metrics.SESSIONS_ACTIVE.set_function(
            lambda: self._count(SessionState.ESTABLISHED)
        )
        metrics.HANDSHAKES_IN_PROGRESS.set_function(
            lambda: self._count(SessionState.HANDSHAKING)
        )

    def handshake_failed(self, session: DtlsSession, exc: SSL.Error) -> None:
        """Log the failure as the listener does, and count it."""
        super().handshake_failed(session, exc)
        if getattr(session, "tls_verdict", None) is not None:
            return  # refused by the chain verifier, already counted
        detail = str(exc)
        reason = (
            Reason.NO_CLIENT_CERTIFICATE
            if "did not return a certificate" in detail
            else Reason.HANDSHAKE_FAILED
        )
        self.tracker.handshake_failed(reason)

    def handshake_completed(self, session: DtlsSession) -> None:
        """Name the session that a new handshake from its address replaces."""
        if self.replacements.get(session.address) is session:
            previous = self.sessions.get(session.address)
            if previous is not None:
                self.tracker.closing(previous, Reason.SESSION_REPLACED)
        super().handshake_completed(session)

    def sweep(self, now: float) -> None:
        """Close idle sessions and stalled handshakes, naming the reason."""
        for session in list(self.sessions.values()):
            if (
                session.state is SessionState.ESTABLISHED
                and now - session.last_activity > self.idle_timeout
            ):
                self.tracker.closing(session, Reason.IDLE_TIMEOUT)
        super().sweep(now)

    def close(self) -> None:
        """Close every session as stopped by the server."""
        self.tracker.stopping = True
        for session in list(self.sessions.values()):
            self.tracker.closing(session, Reason.SERVER_STOPPED)
        super().close()
        metrics.SESSIONS_ACTIVE.set_function(lambda: 0)
        metrics.HANDSHAKES_IN_PROGRESS.set_function(lambda: 0)

    def _count(self, state: SessionState) -> int:
        # list() copies the table in one step, so a scrape from another
        # thread never iterates a dict that the loop is changing.
        return sum(1 for s in list(self.sessions.values()) if s.state is state)


def _key(device: ConnectedDevice) -> tuple[str, str]:
    # A PSK session is keyed by its identity: its device may have no
    # certificate ID, or use a certificate on other sessions.
    if device.psk_id is not None or device.certificate_id is None:
        return device.project_id, f"psk:{device.psk_id}"
    return device.project_id, device.certificate_id


def _peer(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def _event(
    project_id: str,
    address: Address,
    result: ConnectionResult,
    **fields: str | None,
) -> NewConnectionEvent:
    return NewConnectionEvent(
        project_id=project_id,
        peer=_peer(address),
        result=result,
        created_at=dt.datetime.now(dt.UTC),
        **fields,
    )
