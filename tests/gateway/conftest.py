"""Fixtures that run the real gateway in-process and issue device credentials.

The :class:`~fleetgate.gateway.server.Gateway` runs on its own asyncio
loop in a background thread, bound to 127.0.0.1 on a kernel-chosen port,
so tests reach it over real UDP with the reference client or raw
sockets. Listener state lives on that loop: read it through
:meth:`GatewayThread.call`, never directly from the test thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from fleetgate.client import DeviceClient, TransmissionParameters
from fleetgate.config import GatewaySettings
from fleetgate.gateway.dtls import DtlsListener
from fleetgate.gateway.server import Gateway
from fleetgate.gateway.server_identity import (
    ServerIdentity,
    ensure_development_identity,
)
from fleetgate.pki import tools
from fleetgate.store import certificates, projects
from fleetgate.store.database import Database
from fleetgate.store.sealing import KeyEncryptionKey

PROJECT = "acme-sensors"
# Bounds every wait on the loop thread, in seconds.
LOOP_TIMEOUT = 10.0
# Short CoAP retransmission timers keep loss tests within a second.
FAST_TRANSMISSION = TransmissionParameters(ack_timeout=0.2, max_retransmit=3)

T = TypeVar("T")


class GatewayThread:
    """A started :class:`Gateway` whose event loop runs in a daemon thread."""

    def __init__(
        self,
        db: Database,
        identity: ServerIdentity,
        settings: GatewaySettings,
        *,
        psk_key: KeyEncryptionKey | None = None,
    ) -> None:
        self.identity = identity
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="gateway-loop", daemon=True
        )
        self._thread.start()

        async def start() -> Gateway:
            gateway = Gateway(db, identity.credentials, settings, psk_key=psk_key)
            await gateway.start()
            return gateway

        self.gateway = self._run(start())

    @property
    def port(self) -> int:
        """The UDP port the gateway is bound to."""
        return self.gateway.address[1]

    @property
    def listener(self) -> DtlsListener:
        """The gateway's DTLS listener; touch it only inside :meth:`call`."""
        assert self.gateway.listener is not None
        return self.gateway.listener

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the gateway's loop and return its result."""

        async def run() -> T:
            return function()

        return self._run(run())

    def session_count(self) -> int:
        """Number of entries in the listener's session table."""
        return self.call(lambda: len(self.listener.sessions))

    def stop(self) -> None:
        """Stop the gateway, finish its tasks and end the loop thread."""

        async def shutdown() -> None:
            await self.gateway.stop()
            current = asyncio.current_task()
            pending = [task for task in asyncio.all_tasks() if task is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self.loop.shutdown_default_executor()

        try:
            self._run(shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(LOOP_TIMEOUT)
            self.loop.close()

    def _run(self, coroutine: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=LOOP_TIMEOUT)


@dataclasses.dataclass(frozen=True)
class DeviceFiles:
    """A device certificate, its key and any intermediates to send, on disk."""

    cert: Path
    key: Path
    chain: tuple[Path, ...] = ()


@dataclasses.dataclass(frozen=True)
class Issuer:
    """A CA key and certificate that signs device certificates."""

    key: tools.PrivateKey
    certificate: x509.Certificate


class FleetPki:
    """A project with a registered root that issues device certificates to files."""

    def __init__(self, db: Database, folder: Path, project: str = PROJECT) -> None:
        self.db = db
        self.folder = folder
        self.project = project
        folder.mkdir(parents=True, exist_ok=True)
        projects.create_project(db, project)
        self.root = Issuer(*tools.make_root("Fleet Root"))
        self.register(self.root)
        self._count = 0

    def register(self, issuer: Issuer, project: str | None = None) -> None:
        """Register ``issuer``'s certificate as a CA of a project."""
        pem = issuer.certificate.public_bytes(Encoding.PEM)
        certificates.add_ca_certificate(self.db, project or self.project, pem)

    def intermediate(self, name: str = "Fleet Intermediate") -> Issuer:
        """Make an intermediate under the root, not registered."""
        return Issuer(
            *tools.make_intermediate(self.root.key, self.root.certificate, name)
        )

    def device(
        self,
        certificate_id: str,
        *,
        key_type: tools.KeyType = "ec-p256",
        issuer: Issuer | None = None,
        send: tuple[Issuer, ...] = (),
        project: str | None = None,
        days: int = 30,
        not_before: dt.datetime | None = None,
    ) -> DeviceFiles:
        """Issue a v1 device certificate and write it, its key and ``send``."""
        signer = issuer or self.root
        key = tools.make_device_key(key_type)
        csr = tools.make_device_csr(key, project or self.project, certificate_id)
        certificate = tools.sign_device_csr(
            csr, signer.key, signer.certificate, days=days, not_before=not_before
        )
        self._count += 1
        stem = self.folder / f"{self._count:03d}-{certificate_id}"
        cert_path = stem.with_suffix(".pem")
        key_path = stem.with_suffix(".key")
        tools.write_certificate(cert_path, certificate)
        tools.write_private_key(key_path, key)
        chain = []
        for index, extra in enumerate(send):
            path = self.folder / f"{self._count:03d}-chain-{index}.pem"
            tools.write_certificate(path, extra.certificate)
            chain.append(path)
        return DeviceFiles(cert_path, key_path, tuple(chain))


@pytest.fixture(scope="session")
def server_identity(tmp_path_factory: pytest.TempPathFactory) -> ServerIdentity:
    """The development server CA and certificate, made once per run."""
    return ensure_development_identity(tmp_path_factory.mktemp("server-pki"))


@pytest.fixture(scope="session")
def psk_key(tmp_path_factory: pytest.TempPathFactory) -> KeyEncryptionKey:
    """The key-encryption key of PSK credentials, made once per run."""
    folder = tmp_path_factory.mktemp("psk-key")
    return KeyEncryptionKey.load_or_create(folder / "psk-key-encryption.key")


@pytest.fixture
def pki(database: Database, tmp_path: Path) -> FleetPki:
    """The project ``acme-sensors`` with a registered root CA."""
    return FleetPki(database, tmp_path / "pki")


GatewayFactory = Callable[..., GatewayThread]


@pytest.fixture
def start_gateway(
    database: Database, server_identity: ServerIdentity, psk_key: KeyEncryptionKey
) -> Iterator[GatewayFactory]:
    """Return a function that starts a gateway with settings overrides."""
    started: list[GatewayThread] = []

    def start(**overrides: Any) -> GatewayThread:
        options: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
        options.update(overrides)
        running = GatewayThread(
            database, server_identity, GatewaySettings(**options), psk_key=psk_key
        )
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> GatewayThread:
    """A gateway with default settings."""
    return start_gateway()


def connect(
    gateway: GatewayThread,
    device: DeviceFiles,
    *,
    port: int | None = None,
    **options: Any,
) -> DeviceClient:
    """Return an unconnected client for ``device`` aimed at ``gateway``.

    ``port`` sends the traffic elsewhere, such as to a relay in front of
    the gateway.
    """
    assert gateway.identity.root_path is not None
    options.setdefault("timeout", 3.0)
    options.setdefault("transmission", FAST_TRANSMISSION)
    return DeviceClient(
        "127.0.0.1",
        gateway.port if port is None else port,
        device.cert,
        device.key,
        gateway.identity.root_path,
        chain=device.chain,
        **options,
    )
