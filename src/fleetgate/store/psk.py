"""DTLS pre-shared key credentials of devices: create, list, delete, load.

A PSK credential belongs to one existing device; a device may hold
several, and a device may hold certificates as well. Its identity is
``<psk-id>@<project-id>``, the form Golioth's firmware SDK sends, so the
gateway finds the project in the identity itself. The psk-id takes 1 to
64 of ``A-Z a-z 0-9 - _ . : +`` and the whole identity at most 128
bytes, the length RFC 4279, section 5.3 requires every implementation
to support.

The key is shown once, when the credential is created, and is stored
sealed by the data folder's key-encryption key (see
:mod:`fleetgate.store.sealing`). Listings show the identity and times
only. A key supplied by the caller must have 16 to 64 bytes: 16 bytes
give the 128-bit strength of the AES-128 suites, and 64 bytes is the
largest key RFC 4279 requires servers to accept. A generated key is 32
random characters from ``A-Z a-z 0-9`` (about 190 bits): printable, so
firmware that configures its PSK as a string (Golioth's SDK samples,
``coap-client -k``) can use it unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
import string

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetgate.errors import Conflict, InvalidInput, NotFound, Reason
from fleetgate.store import audit
from fleetgate.store.database import Database
from fleetgate.store.devices import require_device
from fleetgate.store.models import Device, PskCredential, utcnow
from fleetgate.store.projects import require_project
from fleetgate.store.sealing import KeyEncryptionKey

MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64
# Fewer distinct byte values than this marks a key as a pattern
# ("aaaa...", "0101..."); a random 16-byte key has fewer with a
# probability below 10^-9.
MIN_DISTINCT_KEY_BYTES = 8
GENERATED_KEY_LENGTH = 32
_KEY_ALPHABET = string.ascii_letters + string.digits
MAX_IDENTITY_BYTES = 128
MAX_PSK_ID_LENGTH = 64
_PSK_ID = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")
_PROJECT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_UNSAFE_IN_PSK_ID = re.compile(r"[^A-Za-z0-9_.:+-]+")
# How often a generated identity is retried with a random suffix when
# another credential has it.
GENERATED_IDENTITY_ATTEMPTS = 3
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class PskIdentity:
    """A parsed PSK identity: ``<psk_id>@<project_id>``."""

    psk_id: str
    project_id: str

    def __str__(self) -> str:
        return f"{self.psk_id}@{self.project_id}"


@dataclasses.dataclass(frozen=True)
class PskCredentialRecord:
    """A PSK credential as stored, without its key."""

    id: str
    project_id: str
    device_id: str
    identity: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: PskCredential) -> PskCredentialRecord:
        """Copy a credential row into a record that outlives its session."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            device_id=row.device_id,
            identity=row.identity,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
        )


@dataclasses.dataclass(frozen=True)
class IssuedPskCredential:
    """A credential just created, and its key, shown only this once."""

    record: PskCredentialRecord
    key: bytes = dataclasses.field(repr=False)
    generated: bool


@dataclasses.dataclass(frozen=True)
class SealedPskCredential:
    """A credential with its sealed key, as the gateway loads it."""

    id: str
    project_id: str
    device_id: str
    identity: str
    sealed_key: bytes = dataclasses.field(repr=False)
    key_encryption_key_id: str

    def open_key(self, kek: KeyEncryptionKey) -> bytes:
        """Decrypt the key, or raise SealedValueUnreadable."""
        return kek.open(
            self.sealed_key,
            _associated_data(self.id, self.project_id, self.device_id, self.identity),
        )


def parse_psk_identity(identity: str) -> PskIdentity:
    """Split ``<psk-id>@<project-id>``, or raise InvalidInput naming the rule."""
    if len(identity.encode("utf-8", "surrogatepass")) > MAX_IDENTITY_BYTES:
        raise InvalidInput(
            f"cannot use PSK identity {identity[:40]!r}...: it has more than "
            f"{MAX_IDENTITY_BYTES} bytes",
            reason=Reason.INVALID_PSK_IDENTITY,
        )
    psk_id, separator, project_id = identity.rpartition("@")
    if not separator:
        raise InvalidInput(
            f"cannot use PSK identity {identity!r}: expected "
            "<psk-id>@<project-id>, as Golioth's firmware SDK sends it",
            reason=Reason.INVALID_PSK_IDENTITY,
        )
    if _PSK_ID.fullmatch(psk_id) is None:
        raise InvalidInput(
            f"cannot use PSK identity {identity!r}: the psk-id before '@' must "
            f"have 1 to {MAX_PSK_ID_LENGTH} of A-Z a-z 0-9 - _ . : +",
            reason=Reason.INVALID_PSK_IDENTITY,
        )
    if _PROJECT_ID.fullmatch(project_id) is None:
        raise InvalidInput(
            f"cannot use PSK identity {identity!r}: {project_id!r} after '@' "
            "is not a project ID",
            reason=Reason.INVALID_PSK_IDENTITY,
        )
    return PskIdentity(psk_id=psk_id, project_id=project_id)


def decode_psk(hex_key: str) -> bytes:
    """Decode a hexadecimal key and check its strength, or raise InvalidInput."""
    compact = "".join(hex_key.split())
    digits_only = all(char in string.hexdigits for char in compact)
    if digits_only and len(compact) % 2 == 1:
        raise InvalidInput(
            f"cannot use the pre-shared key: it has an odd number of hex digits "
            f"({len(compact)}); give two digits per key byte, such as the "
            "output of 'openssl rand -hex 32'",
            reason=Reason.WEAK_PSK,
        )
    try:
        key = bytes.fromhex(compact)
    except ValueError as exc:
        raise InvalidInput(
            "cannot use the pre-shared key: it is not hexadecimal; give the "
            "key bytes as hex digits, such as the output of "
            "'openssl rand -hex 32'",
            reason=Reason.WEAK_PSK,
        ) from exc
    return validate_psk(key)


def validate_psk(key: bytes) -> bytes:
    """Return ``key`` when it is long and varied enough, or raise InvalidInput."""
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidInput(
            f"cannot use a pre-shared key of {len(key)} bytes: it must have "
            f"{MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes ({2 * MIN_KEY_BYTES} "
            f"to {2 * MAX_KEY_BYTES} hex digits); omit it to have one generated",
            reason=Reason.WEAK_PSK,
        )
    if len(set(key)) < MIN_DISTINCT_KEY_BYTES:
        raise InvalidInput(
            f"cannot use the pre-shared key: it has only {len(set(key))} "
            f"distinct byte values, fewer than {MIN_DISTINCT_KEY_BYTES}, so it "
            "is a pattern, not a random key; omit it to have one generated",
            reason=Reason.WEAK_PSK,
        )
    return key


def generate_psk() -> bytes:
    """Return a new random key of printable characters."""
    return "".join(
        secrets.choice(_KEY_ALPHABET) for _ in range(GENERATED_KEY_LENGTH)
    ).encode("ascii")


def create_psk_credential(
    db: Database,
    kek: KeyEncryptionKey,
    project_id: str,
    device_id: str,
    *,
    identity: str | None = None,
    key: bytes | None = None,
    actor: str | None = None,
) -> IssuedPskCredential:
    """Give an existing device a PSK credential, generating what is not given.

    Without ``identity`` it is ``<UTC time>-<device name>@<project>``, as
    Golioth's console makes it. Raises NotFound for a device of another
    project, InvalidInput for a bad identity or weak key, and Conflict
    when another credential has the identity.
    """
    if identity is not None:
        parsed = parse_psk_identity(identity)
        if parsed.project_id != project_id:
            raise InvalidInput(
                f"cannot use PSK identity {identity!r} in project "
                f"{project_id!r}: it must end with '@{project_id}'",
                reason=Reason.INVALID_PSK_IDENTITY,
            )
    generated = key is None
    psk = generate_psk() if key is None else validate_psk(key)

    for attempt in range(GENERATED_IDENTITY_ATTEMPTS):
        try:
            with db.session() as session:
                device = require_device(session, project_id, device_id)
                chosen = identity or _default_identity(device, suffixed=attempt > 0)
                row = _insert(session, kek, device, chosen, psk)
                if actor is not None:
                    _audit(session, actor, "psk.create", row, {"generated": generated})
                record = PskCredentialRecord.from_row(row)
        except IntegrityError as exc:
            if identity is not None or attempt + 1 == GENERATED_IDENTITY_ATTEMPTS:
                raise Conflict(
                    f"cannot create a PSK credential for device {device_id!r} "
                    f"in project {project_id!r}: another credential has the "
                    f"identity {identity or 'generated'!r}; choose another"
                ) from exc
            continue
        return IssuedPskCredential(record=record, key=psk, generated=generated)
    raise AssertionError("unreachable: the last attempt returns or raises")


def list_psk_credentials(
    db: Database, project_id: str, device_id: str
) -> list[PskCredentialRecord]:
    """Return a device's credentials, oldest first, or raise NotFound."""
    with db.session(read_only=True) as session:
        require_device(session, project_id, device_id)
        rows = session.scalars(
            select(PskCredential)
            .where(
                PskCredential.project_id == project_id,
                PskCredential.device_id == device_id,
            )
            .order_by(PskCredential.created_at, PskCredential.id)
        )
        return [PskCredentialRecord.from_row(row) for row in rows]


def get_psk_credential(
    db: Database, project_id: str, credential_id: str, *, device_id: str | None = None
) -> PskCredentialRecord:
    """Return one credential of a project (and device, if given), or raise."""
    with db.session(read_only=True) as session:
        row = _require_credential(session, project_id, credential_id, device_id)
        return PskCredentialRecord.from_row(row)


def delete_psk_credential(
    db: Database,
    project_id: str,
    credential_id: str,
    *,
    device_id: str | None = None,
    actor: str | None = None,
) -> PskCredentialRecord:
    """Remove a credential; handshakes with its identity fail from now on."""
    with db.session() as session:
        row = _require_credential(session, project_id, credential_id, device_id)
        record = PskCredentialRecord.from_row(row)
        session.delete(row)
        if actor is not None:
            _audit(session, actor, "psk.delete", row, {})
        return record


def load_sealed_credentials(
    db: Database, project_id: str | None = None
) -> list[SealedPskCredential]:
    """Return every credential with its sealed key, or one project's."""
    query = select(PskCredential)
    if project_id is not None:
        query = query.where(PskCredential.project_id == project_id)
    with db.session(read_only=True) as session:
        return [
            SealedPskCredential(
                id=row.id,
                project_id=row.project_id,
                device_id=row.device_id,
                identity=row.identity,
                sealed_key=row.sealed_key,
                key_encryption_key_id=row.key_encryption_key_id,
            )
            for row in session.scalars(query)
        ]


def record_psk_use(
    db: Database, credential_id: str, device_id: str, *, now: dt.datetime
) -> None:
    """Note a connection with a credential, writing at most once a minute."""
    stale = now - LAST_USED_RESOLUTION
    with db.session() as session:
        session.execute(
            update(PskCredential)
            .where(
                PskCredential.id == credential_id,
                or_(
                    PskCredential.last_used_at.is_(None),
                    PskCredential.last_used_at < stale,
                ),
            )
            .values(last_used_at=now)
        )
        session.execute(
            update(Device)
            .where(
                Device.id == device_id,
                or_(Device.last_seen_at.is_(None), Device.last_seen_at < stale),
            )
            .values(last_seen_at=now)
        )


def _insert(
    session: Session,
    kek: KeyEncryptionKey,
    device: Device,
    identity: str,
    key: bytes,
) -> PskCredential:
    parse_psk_identity(identity)
    row = PskCredential(
        id=_new_credential_id(),
        project_id=device.project_id,
        device_id=device.id,
        identity=identity,
        key_encryption_key_id=kek.key_id,
    )
    row.sealed_key = kek.seal(
        key, _associated_data(row.id, row.project_id, row.device_id, identity)
    )
    session.add(row)
    session.flush()
    return row


def _new_credential_id() -> str:
    # The ID is sealed into the key, so it is chosen before the insert.
    return secrets.token_hex(12)


def _default_identity(device: Device, *, suffixed: bool) -> str:
    stamp = utcnow().strftime("%Y%m%d%H%M%S")
    name = _UNSAFE_IN_PSK_ID.sub("-", device.name).strip("-") or "device"
    suffix = f"-{secrets.token_hex(2)}" if suffixed else ""
    psk_id = f"{stamp}-{name}"[: MAX_PSK_ID_LENGTH - len(suffix)] + suffix
    return f"{psk_id}@{device.project_id}"


def _associated_data(
    credential_id: str, project_id: str, device_id: str, identity: str
) -> bytes:
    fields = ("fleetgate-psk-v1", credential_id, project_id, device_id, identity)
    return "\0".join(fields).encode("utf-8")


def _require_credential(
    session: Session, project_id: str, credential_id: str, device_id: str | None
) -> PskCredential:
    require_project(session, project_id)
    query = select(PskCredential).where(
        PskCredential.id == credential_id, PskCredential.project_id == project_id
    )
    if device_id is not None:
        query = query.where(PskCredential.device_id == device_id)
    row = session.scalar(query)
    if row is None:
        raise NotFound(
            f"cannot find PSK credential {credential_id!r} in project {project_id!r}"
        )
    return row


def _audit(
    session: Session,
    actor: str,
    action: str,
    row: PskCredential,
    details: dict[str, object],
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        project_id=row.project_id,
        target_type="psk_credential",
        target_id=row.id,
        details={"deviceId": row.device_id, "identity": row.identity, **details},
    )
