"""Building and setting a project's provider, and keeping its CAs in sync.

The command line and the management API set a provider with
:func:`local_provider` or the provider classes, then
:func:`set_project_provider` and :func:`sync_project`, so both behave
the same.

A sync registers every CA certificate the provider offers in the project,
with source ``local`` or ``aws-pca``. It also disables the project's CA
certificates of that source that the provider no longer offers, such as
an AWS CA that was disabled or deleted. CA certificates uploaded by hand
(source ``upload``) are never touched.

A sync never enables a CA certificate again: one disabled here, by an
operator or by an earlier sync, stays disabled until ``fleetgate ca
enable``, because widening trust is left to a person.

:class:`ProviderSyncLoop` runs a sync of every issuing provider when
``fleetgate serve`` starts and every ``interval`` seconds after.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from fleetgate.errors import (
    Conflict,
    FleetgateError,
    InvalidCertificate,
    InvalidInput,
    ProviderFailed,
)
from fleetgate.pki.identity import fingerprint
from fleetgate.providers.aws_pca import AwsPcaProvider
from fleetgate.providers.base import PkiProvider, ProviderKind, ProviderState
from fleetgate.providers.local import LocalProvider
from fleetgate.providers.offline import OfflineProvider
from fleetgate.store import certificates, pki_providers
from fleetgate.store.database import Database
from fleetgate.store.pki_providers import ProviderConfigRecord

log = logging.getLogger(__name__)

DEFAULT_SYNC_INTERVAL = 300.0
ISSUING_KINDS = (ProviderKind.LOCAL.value, ProviderKind.AWS_PCA.value)


@dataclasses.dataclass(frozen=True)
class SyncResult:
    """The changes one sync made to a project's CA certificates."""

    project_id: str
    kind: str
    added: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    ca_count: int = 0


def build_provider(config: ProviderConfigRecord) -> PkiProvider:
    """Return the provider a stored configuration describes."""
    if config.kind == ProviderKind.OFFLINE:
        return OfflineProvider()
    if config.kind == ProviderKind.LOCAL:
        return LocalProvider.from_settings(config.settings)
    if config.kind == ProviderKind.AWS_PCA:
        return AwsPcaProvider.from_settings(config.settings)
    raise FleetgateError(
        f"cannot use provider of project {config.project_id!r}: unknown kind "
        f"{config.kind!r}; set the provider again"
    )


def local_provider(ca_key: Path, ca_cert: Path, *, days: int) -> LocalProvider:
    """Build a local provider from existing files and check that they load.

    Raises InvalidInput when the key or certificate cannot be read or
    they do not belong together.
    """
    provider = LocalProvider(ca_key.resolve(), ca_cert.resolve(), days=days)
    try:
        provider.load_ca()
    except ProviderFailed as exc:
        raise InvalidInput(f"cannot set local provider: {exc.message}") from exc
    return provider


def set_project_provider(
    db: Database,
    project_id: str,
    provider: PkiProvider,
    *,
    max_rotations_per_hour: int | None = None,
    actor: str | None = None,
) -> ProviderConfigRecord:
    """Store ``provider`` as the project's provider, replacing the old one.

    The CA certificates are not synced here, so call
    :func:`sync_project` next. With ``actor`` the change is audited.
    """
    status = (
        ProviderState.OFFLINE
        if provider.kind is ProviderKind.OFFLINE
        else ProviderState.CONFIGURED
    )
    return pki_providers.set_provider_config(
        db,
        project_id,
        provider.kind.value,
        provider.public_settings(),
        status=status,
        max_rotations_per_hour=max_rotations_per_hour,
        actor=actor,
    )


def provider_for(db: Database, project_id: str) -> PkiProvider:
    """Return the provider of a project; raises NotFound for no project."""
    return build_provider(pki_providers.get_provider_config(db, project_id))


def sync_project(
    db: Database,
    project_id: str,
    *,
    now: dt.datetime | None = None,
    actor: str | None = None,
) -> SyncResult:
    """Bring a project's CA certificates in line with its provider.

    Records the outcome (status, error, CA count) on the provider row.
    A provider error is recorded, then raised for the caller to report.
    An offline provider changes nothing. With ``actor`` the outcome and
    each CA certificate added or disabled are audited.
    """
    config = pki_providers.get_provider_config(db, project_id)
    if config.kind == ProviderKind.OFFLINE:
        return SyncResult(project_id, config.kind)
    synced_at = now or dt.datetime.now(dt.UTC)
    try:
        offered = build_provider(config).list_ca_certificates()
    except FleetgateError as exc:
        pki_providers.record_provider_status(
            db, project_id, status=ProviderState.ERROR, error=exc.message, actor=actor
        )
        raise

    registered = {
        ca.fingerprint: ca for ca in certificates.list_ca_certificates(db, project_id)
    }
    added: list[str] = []
    skipped: list[str] = []
    offered_fingerprints: set[str] = set()
    for offer in offered:
        digest = fingerprint(offer.certificate)
        offered_fingerprints.add(digest)
        if digest in registered:
            continue
        try:
            certificates.add_ca_certificate(
                db,
                project_id,
                offer.certificate.public_bytes(Encoding.DER),
                source=config.kind,
                now=synced_at,
                actor=actor,
            )
        except Conflict:
            continue  # another process registered it in between
        except InvalidCertificate as exc:
            # A CA that Fleetgate's policy rejects (a weak key, say)
            # cannot be an anchor, but the others still sync.
            skipped.append(digest)
            log.warning(
                "provider CA not registered project=%s kind=%s ca=%s "
                "fingerprint=%s reason=%s error=%s",
                project_id,
                config.kind,
                offer.name,
                digest,
                exc.reason,
                exc.message,
            )
            continue
        added.append(digest)
        log.info(
            "provider CA registered project=%s kind=%s ca=%s fingerprint=%s",
            project_id,
            config.kind,
            offer.name,
            digest,
        )

    disabled = _disable_withdrawn(
        db, project_id, config.kind, registered, offered_fingerprints, actor
    )
    count = len(offered_fingerprints) - len(skipped)
    pki_providers.record_provider_status(
        db,
        project_id,
        status=ProviderState.CONNECTED,
        error=None,
        ca_count=count,
        synced_at=synced_at,
        actor=actor,
    )
    return SyncResult(
        project_id,
        config.kind,
        added=tuple(added),
        disabled=tuple(disabled),
        skipped=tuple(skipped),
        ca_count=count,
    )


def _disable_withdrawn(
    db: Database,
    project_id: str,
    kind: str,
    registered: dict[str, certificates.CaCertificateRecord],
    offered_fingerprints: set[str],
    actor: str | None,
) -> list[str]:
    disabled = []
    for digest, ca in registered.items():
        if ca.source != kind or not ca.enabled or digest in offered_fingerprints:
            continue
        certificates.set_ca_certificate_enabled(
            db, project_id, ca.id, False, actor=actor
        )
        disabled.append(digest)
        log.info(
            "provider CA disabled project=%s kind=%s ca_id=%s fingerprint=%s "
            "reason=withdrawn_by_provider",
            project_id,
            kind,
            ca.id,
            digest,
        )
    return disabled


class ProviderSyncLoop:
    """Syncs every issuing provider now and then every ``interval`` seconds."""

    def __init__(
        self, db: Database, *, interval: float = DEFAULT_SYNC_INTERVAL
    ) -> None:
        self._db = db
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop as a task of the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="fleetgate-provider-sync"
            )

    async def stop(self) -> None:
        """Cancel the loop and wait for it to end.

        NOTE: a sync already running in a worker thread is not
        interrupted. ``asyncio.run`` waits for it at exit, which takes
        up to the AWS client's connect and read timeouts.
        """
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def run_once(self) -> list[SyncResult]:
        """Sync every project whose provider issues, logging each failure."""
        configs = await asyncio.to_thread(
            pki_providers.list_provider_configs, self._db, kinds=ISSUING_KINDS
        )
        results = []
        for config in configs:
            try:
                result = await asyncio.to_thread(
                    sync_project, self._db, config.project_id
                )
            except FleetgateError as exc:
                log.warning(
                    "provider sync failed project=%s kind=%s reason=%s error=%s",
                    config.project_id,
                    config.kind,
                    exc.reason,
                    exc.message,
                )
                continue
            results.append(result)
        return results

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except FleetgateError as exc:
                # The database itself failed; the next round tries again.
                log.error(
                    "provider sync round failed reason=%s error=%s",
                    exc.reason,
                    exc.message,
                )
            await asyncio.sleep(self._interval)
