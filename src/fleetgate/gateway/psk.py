"""PSK credentials held in memory for the handshake path.

OpenSSL requests a pre-shared key inside the handshake, on the event
loop, so the answer must come from memory: :class:`PskDirectory` keeps
every credential's key, opened with the key-encryption key, indexed by
identity. Worker threads fill it: the gateway reloads it every
``REFRESH_SECONDS``, and the management API of the same process reloads
one project at once after each change, so a deleted credential fails
the next handshake. A change made by the command line or another
process reaches new handshakes within ``REFRESH_SECONDS``. Keys already
opened are reused across reloads, so a reload decrypts only new rows.

While the database is unreachable the last loaded credentials keep
serving. A credential whose key does not open (the key-encryption key
file was replaced, or the row altered) stays listed without a key, so
its handshakes are refused with reason ``psk_unreadable`` instead of
``unknown_psk_identity``, and it is logged once as an ERROR.

NOTE: each reload reads every credential row; fleets of hundreds of
thousands of PSK devices would want change tracking instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import threading

from fleetgate.errors import DeviceRejected, NotFound, Reason, StoreUnavailable
from fleetgate.gateway import reads
from fleetgate.gateway.resources import ConnectedDevice
from fleetgate.store import devices, psk
from fleetgate.store.database import Database
from fleetgate.store.devices import DeviceRecord
from fleetgate.store.sealing import KeyEncryptionKey, SealedValueUnreadable

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class PskPeer:
    """The device a PSK handshake named: the identity attached to its session."""

    credential_id: str
    identity: str
    project_id: str
    device_id: str
    psk_id: str

    def rejection(self, message: str, reason: Reason) -> DeviceRejected:
        """Build the refusal of this peer, carrying its log fields."""
        return DeviceRejected(
            message,
            reason=reason,
            project_id=self.project_id,
            psk_id=self.psk_id,
            device_id=self.device_id,
        )


@dataclasses.dataclass(frozen=True)
class _Entry:
    credential: psk.SealedPskCredential
    # None when the sealed key does not open.
    key: bytes | None = dataclasses.field(repr=False)


class PskDirectory:
    """Serves each identity's pre-shared key from memory."""

    def __init__(self, db: Database, kek: KeyEncryptionKey | None) -> None:
        self._db = db
        self._kek = kek
        self._entries: dict[str, _Entry] = {}
        # Serialises reloads, so that a slow full reload cannot put back a
        # credential that a project reload has just dropped.
        self._reload_lock = threading.Lock()
        self._unreadable_logged: set[str] = set()

    def resolve(self, identity: str) -> tuple[PskPeer, bytes]:
        """Return the peer and key for ``identity``, or raise DeviceRejected."""
        try:
            parsed = psk.parse_psk_identity(identity)
        except ValueError as exc:
            raise DeviceRejected(
                f"cannot accept PSK identity {identity!r}: it is malformed",
                reason=Reason.INVALID_PSK_IDENTITY,
                psk_id=_printable(identity),
            ) from exc
        entry = self._entries.get(identity)
        if entry is None or entry.credential.project_id != parsed.project_id:
            raise DeviceRejected(
                f"cannot accept PSK identity {identity!r}: no credential has it",
                reason=Reason.UNKNOWN_PSK_IDENTITY,
                project_id=parsed.project_id,
                psk_id=parsed.psk_id,
            )
        peer = PskPeer(
            credential_id=entry.credential.id,
            identity=identity,
            project_id=parsed.project_id,
            device_id=entry.credential.device_id,
            psk_id=parsed.psk_id,
        )
        if entry.key is None:
            raise peer.rejection(
                f"cannot accept PSK identity {identity!r}: its stored key does "
                "not open with this server's key-encryption key",
                Reason.PSK_UNREADABLE,
            )
        return peer, entry.key

    def contains(self, peer: PskPeer) -> bool:
        """Tell whether the credential ``peer`` connected with still exists."""
        entry = self._entries.get(peer.identity)
        return entry is not None and entry.credential.id == peer.credential_id

    def refresh(self) -> None:
        """Reload every credential; keep the last ones while the store is down."""
        with self._reload_lock:
            try:
                rows = psk.load_sealed_credentials(self._db)
            except StoreUnavailable as exc:
                log.debug("cannot reload PSK credentials error=%s", exc.message)
                return
            self._entries = self._open_all(rows, self._entries)

    def reload_project(self, project_id: str) -> None:
        """Reload one project's credentials now, after a change through the API."""
        with self._reload_lock:
            rows = psk.load_sealed_credentials(self._db, project_id)
            kept = {
                identity: entry
                for identity, entry in self._entries.items()
                if entry.credential.project_id != project_id
            }
            opened = self._open_all(rows, self._entries)
            self._entries = {**kept, **opened}

    def _open_all(
        self, rows: list[psk.SealedPskCredential], previous: dict[str, _Entry]
    ) -> dict[str, _Entry]:
        entries: dict[str, _Entry] = {}
        for row in rows:
            known = previous.get(row.identity)
            if known is not None and known.credential == row:
                entries[row.identity] = known
            else:
                entries[row.identity] = _Entry(row, self._open(row))
        return entries

    def _open(self, row: psk.SealedPskCredential) -> bytes | None:
        try:
            if self._kek is None:
                raise SealedValueUnreadable(
                    "cannot open PSK keys: the gateway has no key-encryption key"
                )
            return row.open_key(self._kek)
        except SealedValueUnreadable as exc:
            if row.id not in self._unreadable_logged:
                self._unreadable_logged.add(row.id)
                current = self._kek.key_id if self._kek else "none"
                log.error(
                    "cannot open PSK credential project=%s identity=%s "
                    "credential=%s sealed_by=%s key_encryption_key=%s error=%s; "
                    "restore the key file or create the credential again",
                    row.project_id,
                    row.identity,
                    row.id,
                    row.key_encryption_key_id,
                    current,
                    exc.message,
                )
            return None


def _printable(identity: str) -> str:
    """Return at most 64 characters of an untrusted identity, escaped for a log."""
    shown = identity[:64].encode("ascii", "backslashreplace").decode("ascii")
    return "".join(ch if ch.isprintable() and ch != " " else "?" for ch in shown)


async def associate_psk(
    db: Database, directory: PskDirectory, peer: PskPeer
) -> ConnectedDevice:
    """Bind a PSK session to the device that its credential names.

    The device must exist and be enabled. Its last-seen time and the
    credential's last use are written at most once a minute.
    """
    record = await _require_enabled(db, directory, peer)
    now = dt.datetime.now(dt.UTC)
    seen = record.last_seen_at
    if seen is None or now - seen >= psk.LAST_USED_RESOLUTION:
        await asyncio.to_thread(
            psk.record_psk_use, db, peer.credential_id, peer.device_id, now=now
        )
    log.debug(
        "device connected project=%s psk_id=%s device=%s",
        peer.project_id,
        peer.psk_id,
        record.id,
    )
    return ConnectedDevice(
        project_id=peer.project_id,
        device_id=record.id,
        device_name=record.name,
        certificate_id=record.certificate_id,
        psk_id=peer.psk_id,
    )


async def recheck_psk(db: Database, directory: PskDirectory, peer: PskPeer) -> None:
    """Raise DeviceRejected when the credential or its device is gone or disabled."""
    await _require_enabled(db, directory, peer)


async def _require_enabled(
    db: Database, directory: PskDirectory, peer: PskPeer
) -> DeviceRecord:
    if not directory.contains(peer):
        raise peer.rejection(
            f"cannot serve device {peer.device_id!r}: its PSK credential "
            f"{peer.identity!r} was deleted",
            Reason.UNKNOWN_PSK_IDENTITY,
        )
    try:
        record = await reads.read(
            db, devices.get_device, db, peer.project_id, peer.device_id
        )
    except NotFound as exc:
        raise peer.rejection(
            f"cannot serve device {peer.device_id!r}: it was deleted",
            Reason.NOT_FOUND,
        ) from exc
    if not record.enabled:
        raise peer.rejection(
            f"cannot serve device {peer.device_id!r}: it is disabled",
            Reason.DEVICE_DISABLED,
        )
    return record
