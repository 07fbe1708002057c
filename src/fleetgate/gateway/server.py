"""The device gateway: DTLS listener, chain verification, association, services.

:class:`Gateway` wires the parts together for ``fleetgate serve``: it
verifies each peer chain inside the handshake against the anchors of
the project the leaf names, associates the verified device with its
record right after the handshake, and routes its CoAP requests.

Devices authenticate with a certificate or with a pre-shared key
(:mod:`fleetgate.gateway.psk`) on the same port. Every refused device is
logged at WARNING with ``project``, ``cert_id``, ``reason`` and
``fingerprint`` fields, or ``project``, ``psk_id`` and ``reason`` for a
PSK; the certificate itself and any key material never reach the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import socket
import sys
from collections.abc import Callable, Collection, Sequence

from OpenSSL import SSL, crypto

from fleetgate import provisioning
from fleetgate.config import GatewaySettings
from fleetgate.errors import (
    ChainRejected,
    DeviceRejected,
    InvalidInput,
    Reason,
)
from fleetgate.gateway import reads
from fleetgate.gateway.clones import CloneDetector
from fleetgate.gateway.coap import CoapEndpoint, DeviceLink
from fleetgate.gateway.connection_log import ConnectionLog
from fleetgate.gateway.cookies import SharedCookieJar
from fleetgate.gateway.dtls import DtlsListener, DtlsSession, SessionState
from fleetgate.gateway.psk import (
    REFRESH_SECONDS,
    PskDirectory,
    PskPeer,
    associate_psk,
    recheck_psk,
)
from fleetgate.gateway.resources import ConnectedDevice, Router
from fleetgate.gateway.services.csr import CsrService
from fleetgate.gateway.services.logs import LogService
from fleetgate.gateway.services.ota import OtaService
from fleetgate.gateway.services.rpc import RpcService
from fleetgate.gateway.services.settings import SettingsService
from fleetgate.gateway.services.state import StateService
from fleetgate.gateway.services.stream import StreamService
from fleetgate.gateway.tls import ServerCredentials, build_server_context
from fleetgate.gateway.tracking import ConnectionTracker, TrackedListener
from fleetgate.gateway.trust import TrustCache
from fleetgate.gateway.writes import DeviceWriter
from fleetgate.pki.verify import ChainVerifier, VerifiedDevice
from fleetgate.providers.sync import ProviderSyncLoop
from fleetgate.store import certificates, devices
from fleetgate.store.changes import ota_changes, settings_changes, state_changes
from fleetgate.store.database import Database
from fleetgate.store.sealing import KeyEncryptionKey

log = logging.getLogger(__name__)

# How long a thread may hold the GIL while another waits for it. The
# interpreter's default of 5 ms lets a worker thread busy with a store
# write keep the event loop from every datagram for that long, which
# halved the connection rate under a handshake storm (bench/handshake.py).
GIL_SWITCH_SECONDS = 0.0005


def favour_event_loop() -> None:
    """Let the event loop thread take the GIL back soon from worker threads.

    The serving processes call this once before their event loop starts.
    """
    sys.setswitchinterval(GIL_SWITCH_SECONDS)


class GatewayState(enum.Enum):
    """Lifecycle of a :class:`Gateway`."""

    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


class Gateway:
    """Serves devices over CoAP/DTLS on one UDP port."""

    def __init__(
        self,
        db: Database,
        credentials: ServerCredentials,
        settings: GatewaySettings,
        *,
        psk_key: KeyEncryptionKey | None = None,
    ) -> None:
        self.db = db
        # Without psk_key, PSK credentials cannot be opened and every PSK
        # handshake is refused with reason psk_unreadable.
        self.psk = PskDirectory(db, psk_key)
        self._psk_refresher: asyncio.Task[None] | None = None
        self.settings = settings
        self.state = GatewayState.CREATED
        self.trust = TrustCache(
            lambda project: certificates.trust_for(db, project),
            version=lambda project: certificates.trust_version(db, project),
        )
        self.verifier = ChainVerifier(self.trust)
        self.router = Router()
        # Applies the device writes of this process in batches.
        self.writer = DeviceWriter(db)
        self.router.add(".d", StateService(db, self.writer).handle)
        limits = settings.rate_limits
        self.logs = LogService(self.writer, limits=limits)
        self.router.add("logs", self.logs.handle)
        stream = StreamService(self.writer, logs=self.logs.handle, limits=limits)
        self.router.add(".s", stream.handle)
        self.router.add("v1", CsrService(db, mtu=settings.mtu).handle)
        self.router.add(".c", SettingsService(db, self.writer, limits=limits).handle)
        self.router.add(".u", OtaService(db, self.writer, limits=limits).handle)
        # Keeps CA certificates of local and AWS providers in sync.
        self.provider_sync = ProviderSyncLoop(db)
        self.connection_log = ConnectionLog(db, settings.connection_log)
        self.tracker = ConnectionTracker(self.connection_log, CloneDetector())
        self.endpoint = CoapEndpoint(
            self.router, self._associate, self._revalidate, tracker=self.tracker
        )
        self.rpc = RpcService(self.endpoint.observers)
        self.router.add(".rpc", self.rpc.handle)
        self.context = build_server_context(
            credentials,
            self._authenticate,
            verify_cookie=_verify_cookie,
            generate_cookie=_generate_cookie,
            authenticate_psk=self._authenticate_psk,
            check_psk_finished=self._check_psk_finished,
        )
        self.listener: DtlsListener | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._unsubscribe_settings: Callable[[], None] | None = None
        self._unsubscribe_ota: Callable[[], None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound UDP address; the port is real even when 0 was asked for."""
        if self._transport is None:
            raise RuntimeError("cannot tell the address: the gateway is not running")
        sockname = self._transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    async def start(self) -> None:
        """Bind the UDP socket and start accepting handshakes."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if family == socket.AF_INET6:
            # Serve IPv4 peers too when bound to "::".
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if self.settings.reuse_port:
            # Workers of one server bind the same port, and the kernel
            # picks a socket for each datagram by a hash of its 4-tuple.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.settings.host, self.settings.port))
        await asyncio.to_thread(self.psk.refresh)

        transport, protocol = await loop.create_datagram_endpoint(
            lambda: TrackedListener(
                self.context,
                self.endpoint,
                mtu=self.settings.mtu,
                max_sessions=self.settings.max_sessions,
                max_handshakes_per_address=self.settings.max_handshakes_per_address,
                idle_timeout=self.settings.idle_timeout.total_seconds(),
                handshake_timeout=self.settings.handshake_timeout.total_seconds(),
                tracker=self.tracker,
            ),
            sock=sock,
        )
        self._transport = transport
        self.listener = protocol
        if self.settings.cookie_secret is not None:
            protocol.cookies = SharedCookieJar(self.settings.cookie_secret)
        self.state = GatewayState.RUNNING
        self.writer.start()
        self.connection_log.start()
        if self.settings.sync_providers:
            self.provider_sync.start()
        self._psk_refresher = loop.create_task(
            self._refresh_psk_forever(), name="fleetgate-psk-refresh"
        )
        self.rpc.bind(loop)
        # Observers hear of state changes that this process commits.
        self._unsubscribe = state_changes.subscribe(
            self.endpoint.observers.state_changed
        )
        self._unsubscribe_settings = settings_changes.subscribe(self._settings_changed)
        self._unsubscribe_ota = ota_changes.subscribe(self._ota_changed)
        host, port = self.address
        log.info("device gateway listening on udp %s port %d", host, port)

    async def stop(self) -> None:
        """Close every session with close_notify and release the socket."""
        await self.provider_sync.stop()
        if self._psk_refresher is not None:
            self._psk_refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._psk_refresher
            self._psk_refresher = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._unsubscribe_settings is not None:
            self._unsubscribe_settings()
            self._unsubscribe_settings = None
        if self._unsubscribe_ota is not None:
            self._unsubscribe_ota()
            self._unsubscribe_ota = None
        # Before the sessions close, so that each queued write is applied
        # and its response sent. A write that arrives later gets 5.03.
        await self.writer.stop()
        if self.listener is not None:
            self.listener.close()
        # After the listener, so that the session ends are written too.
        await self.connection_log.stop()
        self.state = GatewayState.STOPPED
        log.info("device gateway stopped")

    async def close_device_sessions(
        self, project_id: str, device_ids: Collection[str], reason: Reason
    ) -> int:
        """Close the sessions of these devices with close_notify; from any loop.

        Returns how many sessions were closed; the connection log gives
        ``reason`` for each. Sessions that other processes serve end
        within the recheck interval, when they find the device disabled.
        """
        listener = self.listener
        if listener is None or not device_ids:
            return 0
        wanted = frozenset(device_ids)

        async def close() -> int:
            closing = [
                session
                for session in list(listener.sessions.values())
                if _serves(session, project_id, wanted)
            ]
            for session in closing:
                self.tracker.closing(session, reason)
                session.close(notify=True)
            log.info(
                "device sessions closed project=%s reason=%s devices=%d sessions=%d",
                project_id,
                reason,
                len(wanted),
                len(closing),
            )
            return len(closing)

        if listener.loop is asyncio.get_running_loop():
            return await close()
        future = asyncio.run_coroutine_threadsafe(close(), listener.loop)
        return await asyncio.wrap_future(future)

    def _settings_changed(self, project_id: str, path: tuple[str, ...]) -> None:
        device_id = path[0] if path else None
        self.endpoint.observers.resource_changed(".c", project_id, device_id)

    def _ota_changed(self, project_id: str, path: tuple[str, ...]) -> None:
        device_id = path[0] if path else None
        self.endpoint.observers.resource_changed(".u", project_id, device_id)

    def _authenticate(
        self,
        session: object,
        chain: Sequence[crypto.X509],
    ) -> VerifiedDevice:
        try:
            return self.verifier.verify_openssl(chain)
        except ChainRejected as exc:
            peer = getattr(session, "address", ("-", 0))
            log.warning(
                "device rejected peer=%s:%s %s", peer[0], peer[1], exc.log_fields()
            )
            self.tracker.chain_rejected(peer, exc)
            raise

    def _authenticate_psk(
        self, session: object, claimed: bytes
    ) -> tuple[PskPeer, bytes]:
        try:
            return self.psk.resolve(claimed.decode("utf-8"))
        except UnicodeDecodeError:
            rejected = DeviceRejected(
                "cannot accept a PSK identity that is not UTF-8",
                reason=Reason.INVALID_PSK_IDENTITY,
                psk_id=claimed[:64].hex(),
            )
        except DeviceRejected as exc:
            rejected = exc
        peer = getattr(session, "address", ("-", 0))
        log.warning(
            "device rejected peer=%s:%s %s", peer[0], peer[1], rejected.log_fields()
        )
        self.tracker.chain_rejected(peer, rejected)
        raise rejected

    def _check_psk_finished(self, session: object, identity: object) -> None:
        if not isinstance(session, DtlsSession) or not isinstance(identity, PskPeer):
            return
        if session.state is not SessionState.HANDSHAKING:
            return
        rejected = identity.rejection(
            "its Finished message did not decrypt: the device has another "
            "key for this identity",
            Reason.PSK_MISMATCH,
        )
        log.warning(
            "device rejected peer=%s:%s %s error=%s",
            session.address[0],
            session.address[1],
            rejected.log_fields(),
            rejected.message,
        )
        self.tracker.chain_rejected(session.address, rejected)
        session.close(notify=False)

    async def _refresh_psk_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await asyncio.to_thread(self.psk.refresh)
            except Exception:
                log.exception("cannot reload PSK credentials")

    async def _revalidate(self, identity: object, device: ConnectedDevice) -> None:
        if isinstance(identity, PskPeer):
            await recheck_psk(self.db, self.psk, identity)
            return
        if not isinstance(identity, VerifiedDevice):
            raise InvalidInput("cannot recheck: the session has no verified identity")
        await _check_still_enabled(self, identity, device)

    async def _associate(self, identity: object) -> ConnectedDevice:
        if isinstance(identity, PskPeer):
            return await associate_psk(self.db, self.psk, identity)
        if not isinstance(identity, VerifiedDevice):
            raise InvalidInput("cannot associate: the session has no verified identity")
        # A known device with nothing to record costs one read. Creating,
        # adopting or recording a change writes, so it runs in a thread.
        device = await reads.read(
            self.db,
            provisioning.associate_known,
            self.db,
            project_id=identity.project_id,
            certificate_id=identity.certificate_id,
            fingerprint=identity.fingerprint,
            not_after=identity.not_after,
            now=_utcnow(),
            ca_fingerprints=identity.ca_fingerprints,
        )
        if device is None:
            device = await asyncio.to_thread(
                provisioning.associate,
                self.db,
                project_id=identity.project_id,
                certificate_id=identity.certificate_id,
                fingerprint=identity.fingerprint,
                not_after=identity.not_after,
                ca_chain=provisioning.chain_cas(
                    identity.chain[1:], identity.ca_fingerprints
                ),
            )
        log.debug(
            "device connected project=%s cert_id=%s device=%s",
            identity.project_id,
            identity.certificate_id,
            device.device_id,
        )
        return ConnectedDevice(
            project_id=identity.project_id,
            device_id=device.device_id,
            device_name=device.name,
            certificate_id=identity.certificate_id,
        )


async def _check_still_enabled(
    gateway: Gateway, identity: VerifiedDevice, device: ConnectedDevice
) -> None:
    trust = gateway.trust.anchors_for(identity.project_id)
    anchors = {anchor.fingerprint for anchor in trust.anchors} if trust else set()
    if identity.anchor_fingerprint not in anchors:
        raise DeviceRejected(
            f"cannot serve device {device.device_id!r}: its CA certificate "
            f"{identity.anchor_fingerprint} is no longer enabled in the project",
            reason=Reason.CA_DISABLED,
            project_id=identity.project_id,
            certificate_id=identity.certificate_id,
            fingerprint=identity.fingerprint,
            device_id=device.device_id,
        )
    enabled = await reads.read(
        gateway.db,
        devices.device_enabled,
        gateway.db,
        identity.project_id,
        device.device_id,
    )
    if enabled is None:
        raise DeviceRejected(
            f"cannot serve device {device.device_id!r}: it was deleted",
            reason=Reason.DEVICE_DELETED,
            project_id=identity.project_id,
            certificate_id=identity.certificate_id,
            fingerprint=identity.fingerprint,
            device_id=device.device_id,
        )
    if not enabled:
        raise DeviceRejected(
            f"cannot serve device {device.device_id!r}: it is disabled",
            reason=Reason.DEVICE_DISABLED,
            project_id=identity.project_id,
            certificate_id=identity.certificate_id,
            fingerprint=identity.fingerprint,
            device_id=device.device_id,
        )


def _serves(session: DtlsSession, project_id: str, device_ids: frozenset[str]) -> bool:
    link = session.application_state
    if not isinstance(link, DeviceLink) or link.device is None:
        return False
    return link.device.project_id == project_id and link.device.device_id in device_ids


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _session(connection: SSL.Connection) -> DtlsSession:
    session = connection.get_app_data()
    assert isinstance(session, DtlsSession)
    return session


def _verify_cookie(connection: SSL.Connection, cookie: bytes) -> bool:
    session = _session(connection)
    return session.listener.cookies.check(session.address, cookie)


def _generate_cookie(connection: SSL.Connection) -> bytes:
    session = _session(connection)
    return session.listener.cookies.issue(session.address)
