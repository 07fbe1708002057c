"""The association rule: which device record an authenticated device is.

Once a device's chain has verified and the DTLS handshake has proven that
it holds the key, :func:`associate` maps its certificate ID to a device
record, in this order:

1. the device whose certificate ID it is;
2. else the device whose name equals the certificate ID and which has no
   certificate ID yet, which adopts it (an operator pre-provisioned it);
3. else a new device named after the certificate ID or, when a device
   with another certificate ID has that name, the certificate ID plus
   ``-`` and six random hex digits. A project with ``require_manifest``
   creates one only for a certificate ID listed in a manufacturing
   manifest, and rejects the others with ``not_in_manifest``.

:func:`preview_association` tells which of these would apply, without
writing anything.

The rule is race-free without application locks. The database enforces
unique (project, certificate ID) and (project, name), so of two first
connections with one certificate ID only one INSERT succeeds. The loser
gets an integrity error, rolls back and runs the rule again, and then
finds the winner's device in step 1.

What is written when: creating or adopting a device, and a connection
with another certificate fingerprint, expiry or CA chain than the stored
ones, write the device row at once. A known device reconnecting with the same
certificate costs one read, and its ``last_seen_at`` is written only
when the stored value is ``LAST_SEEN_RESOLUTION`` (60 s) or more older
than the connection. So the stored ``last_seen_at`` lags the latest
connection by less than that, and nothing lives only in memory: a
restart loses no association and no fingerprint.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
from collections.abc import Sequence
from typing import Literal

from cryptography import x509
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetgate import metrics
from fleetgate.errors import Conflict, DeviceRejected, NotFound, Reason
from fleetgate.pki.identity import validate_certificate_id
from fleetgate.store import manifests
from fleetgate.store.database import Database, PreparedRead
from fleetgate.store.models import Device, Project

logger = logging.getLogger(__name__)

# Attempts before giving up. Each lost race costs one attempt. After a
# conflict the winner's row is committed and visible, so the next
# attempt usually finds it.
MAX_ATTEMPTS = 8

# Hex digits appended to a name that another device already has.
SUFFIX_HEX_DIGITS = 6

# Connections of a known device closer together than this share one
# last-seen write, so a reconnect storm reads the store without writing.
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=60)


@dataclasses.dataclass(frozen=True)
class ChainCa:
    """A CA certificate of a device's verified chain, as the device row records it."""

    fingerprint: str
    subject: str
    not_after: dt.datetime

    def to_json(self) -> dict[str, str]:
        """Render as the JSON object stored in ``devices.ca_chain``."""
        return {
            "fingerprint": self.fingerprint,
            "subject": self.subject,
            "notAfter": self.not_after.isoformat(),
        }


def chain_cas(
    certificates: Sequence[x509.Certificate], fingerprints: Sequence[str]
) -> tuple[ChainCa, ...]:
    """Pair the CA certificates of a verified chain with their fingerprints."""
    return tuple(
        ChainCa(
            fingerprint=cert_fingerprint,
            subject=cert.subject.rfc4514_string(),
            not_after=cert.not_valid_after_utc,
        )
        for cert, cert_fingerprint in zip(certificates, fingerprints, strict=True)
    )


@dataclasses.dataclass(frozen=True)
class AssociatedDevice:
    """The device record a connection was associated with."""

    device_id: str
    name: str
    project_id: str
    certificate_id: str
    created: bool
    adopted: bool


def associate(
    db: Database,
    *,
    project_id: str,
    certificate_id: str,
    fingerprint: str,
    not_after: dt.datetime,
    now: dt.datetime | None = None,
    ca_chain: Sequence[ChainCa] | None = None,
) -> AssociatedDevice:
    """Find, adopt or create the device of an authenticated certificate.

    Records the connection time, the certificate's fingerprint and
    expiry and, when given, the CA certificates of its chain on the
    device. Raises DeviceRejected when the device is disabled, the
    project does not exist, or the project requires a manifest that does
    not list a new certificate ID.
    """
    certificate_id = validate_certificate_id(certificate_id)
    seen_at = now or dt.datetime.now(dt.UTC)
    if not_after.tzinfo is None or seen_at.tzinfo is None:
        raise ValueError("cannot associate device: datetimes must be aware (UTC)")

    current = associate_known(
        db,
        project_id=project_id,
        certificate_id=certificate_id,
        fingerprint=fingerprint,
        not_after=not_after,
        now=seen_at,
        ca_fingerprints=(
            None if ca_chain is None else [ca.fingerprint for ca in ca_chain]
        ),
    )
    if current is not None:
        return current

    last_error: IntegrityError | None = None
    for attempt in range(MAX_ATTEMPTS):
        try:
            with db.session() as session:
                associated = _associate_once(
                    session,
                    project_id=project_id,
                    certificate_id=certificate_id,
                    fingerprint=fingerprint,
                    not_after=not_after,
                    seen_at=seen_at,
                    ca_chain=ca_chain,
                )
        except IntegrityError as exc:
            # Another connection created or adopted a device with this
            # name or certificate ID since this attempt looked.
            last_error = exc
            logger.debug(
                "association retried project=%s cert_id=%s attempt=%d",
                project_id,
                certificate_id,
                attempt + 1,
            )
            continue

        if associated.created or associated.adopted:
            how = "created" if associated.created else "adopted"
            metrics.DEVICES_PROVISIONED.labels(how=how).inc()
            logger.info(
                "device %s project=%s device=%s name=%s cert_id=%s fingerprint=%s",
                how,
                project_id,
                associated.device_id,
                associated.name,
                certificate_id,
                fingerprint,
            )
        return associated

    raise Conflict(
        f"cannot associate certificate ID {certificate_id!r} in project "
        f"{project_id!r}: {MAX_ATTEMPTS} attempts conflicted with other writers"
    ) from last_error


def associate_known(
    db: Database,
    *,
    project_id: str,
    certificate_id: str,
    fingerprint: str,
    not_after: dt.datetime,
    now: dt.datetime,
    ca_fingerprints: Sequence[str] | None = None,
) -> AssociatedDevice | None:
    """Return the device of a known certificate when no write is due, else None.

    Only reads the store. Raises DeviceRejected when that device is
    disabled. None means :func:`associate` must run to write the change.
    ``ca_fingerprints`` None leaves the recorded CA chain out of the
    comparison.
    """
    known = _known_device(db, project_id, certificate_id)
    if known is None or not _is_current(known, fingerprint, not_after, now):
        return None
    if ca_fingerprints is not None and known.ca_fingerprints != list(ca_fingerprints):
        return None
    if not known.enabled:
        raise _disabled(known.id, project_id, certificate_id, fingerprint)
    return AssociatedDevice(
        device_id=known.id,
        name=known.name,
        project_id=project_id,
        certificate_id=certificate_id,
        created=False,
        adopted=False,
    )


def _associate_once(
    session: Session,
    *,
    project_id: str,
    certificate_id: str,
    fingerprint: str,
    not_after: dt.datetime,
    seen_at: dt.datetime,
    ca_chain: Sequence[ChainCa] | None,
) -> AssociatedDevice:
    project = session.get(Project, project_id)
    if project is None:
        raise DeviceRejected(
            f"cannot associate device: project {project_id!r} does not exist",
            reason=Reason.UNKNOWN_PROJECT,
            project_id=project_id,
            certificate_id=certificate_id,
            fingerprint=fingerprint,
        )

    # FOR UPDATE makes a concurrent adopter wait, and PostgreSQL then
    # re-checks the WHERE clause, so only one of them adopts the device.
    in_project = Device.project_id == project_id
    device = session.scalar(
        select(Device)
        .where(in_project, Device.certificate_id == certificate_id)
        .with_for_update()
    )
    created = adopted = False
    if device is None:
        device = session.scalar(
            select(Device)
            .where(
                in_project,
                Device.name == certificate_id,
                Device.certificate_id.is_(None),
            )
            .with_for_update()
        )
        adopted = device is not None
    if device is None:
        # The one extra lookup on the handshake path, and only here,
        # where a new device would be created.
        if project.require_manifest and not manifests.is_listed(
            session, project_id, certificate_id
        ):
            raise DeviceRejected(
                f"cannot create a device for certificate ID {certificate_id!r}: "
                f"project {project_id!r} requires a manifest, and no batch "
                "lists it",
                reason=Reason.NOT_IN_MANIFEST,
                project_id=project_id,
                certificate_id=certificate_id,
                fingerprint=fingerprint,
            )
        device = Device(
            project_id=project_id,
            name=_free_name(session, project_id, certificate_id),
            certificate_id=certificate_id,
            enabled=True,
            hardware_ids=[],
            tags=[],
            metadata_={},
        )
        session.add(device)
        created = True

    if not device.enabled:
        raise _disabled(device.id, project_id, certificate_id, fingerprint)
    if adopted:
        device.certificate_id = certificate_id
    device.last_seen_at = seen_at
    device.last_certificate_fingerprint = fingerprint
    device.last_certificate_not_after = not_after
    if ca_chain is not None:
        recorded = [ca.to_json() for ca in ca_chain]
        if device.ca_chain != recorded:
            device.ca_chain = recorded
    # Flushing here surfaces a lost race as IntegrityError inside the
    # retry loop, and assigns the new device its ID.
    session.flush()

    return AssociatedDevice(
        device_id=device.id,
        name=device.name,
        project_id=project_id,
        certificate_id=certificate_id,
        created=created,
        adopted=adopted,
    )


@dataclasses.dataclass(frozen=True)
class _KnownDevice:
    id: str
    name: str
    enabled: bool
    last_seen_at: dt.datetime | None
    fingerprint: str | None
    not_after: dt.datetime | None
    ca_chain: list[dict[str, str]] | None

    @property
    def ca_fingerprints(self) -> list[str]:
        return [ca["fingerprint"] for ca in self.ca_chain or []]


def _known_device(
    db: Database, project_id: str, certificate_id: str
) -> _KnownDevice | None:
    """Read the device holding ``certificate_id`` without taking a write lock."""
    # Plain DB-API: this read runs after every handshake, where the ORM
    # session cost about 20 times the query on SQLite.
    row = _KNOWN_DEVICE_QUERY.fetch_one(
        db, project_id=project_id, certificate_id=certificate_id
    )
    if row is None:
        return None
    return _KnownDevice(*row)


# The unique constraint on (project, certificate ID) makes this one row.
_KNOWN_DEVICE_QUERY = PreparedRead(
    select(
        Device.id,
        Device.name,
        Device.enabled,
        Device.last_seen_at,
        Device.last_certificate_fingerprint,
        Device.last_certificate_not_after,
        Device.ca_chain,
    ).where(
        Device.project_id == bindparam("project_id"),
        Device.certificate_id == bindparam("certificate_id"),
    )
)


def _is_current(
    known: _KnownDevice,
    fingerprint: str,
    not_after: dt.datetime,
    seen_at: dt.datetime,
) -> bool:
    """Tell whether the stored row already records this connection closely enough."""
    if known.fingerprint != fingerprint or known.not_after != not_after:
        return False
    if known.last_seen_at is None:
        return False
    return seen_at - known.last_seen_at < LAST_SEEN_RESOLUTION


def _disabled(
    device_id: str, project_id: str, certificate_id: str, fingerprint: str
) -> DeviceRejected:
    return DeviceRejected(
        f"cannot associate device {device_id}: it is disabled",
        reason=Reason.DEVICE_DISABLED,
        project_id=project_id,
        certificate_id=certificate_id,
        fingerprint=fingerprint,
        device_id=device_id,
    )


def _free_name(session: Session, project_id: str, certificate_id: str) -> str:
    # The name is only a hint. When another device takes it before the
    # INSERT, the unique constraint rejects the INSERT and the retry
    # picks a name again.
    if not _name_taken(session, project_id, certificate_id):
        return certificate_id
    for _attempt in range(MAX_ATTEMPTS):
        name = f"{certificate_id}-{random_suffix()}"
        if not _name_taken(session, project_id, name):
            return name
    raise Conflict(
        f"cannot name a device for certificate ID {certificate_id!r}: "
        f"{MAX_ATTEMPTS} random names were all taken"
    )


def random_suffix() -> str:
    """Return the random hex digits that tell apart devices of one name."""
    return secrets.token_hex(SUFFIX_HEX_DIGITS // 2)


def _name_taken(session: Session, project_id: str, name: str) -> bool:
    query = select(Device.id).where(
        Device.project_id == project_id, Device.name == name
    )
    return session.scalar(query) is not None


AssociationRule = Literal["existing", "adopt", "create", "create_with_suffix"]


@dataclasses.dataclass(frozen=True)
class AssociationPreview:
    """The association rule a certificate ID would meet, and its outcome.

    ``reason`` is set when the device would be rejected after the rule
    matched: a disabled device, or a certificate ID missing from the
    manifest that the project requires. For ``create_with_suffix`` the
    name shows the random part as ``XXXXXX``.
    """

    rule: AssociationRule
    device_id: str | None
    device_name: str
    reason: Reason | None = None
    detail: str = ""


def preview_association(
    db: Database, *, project_id: str, certificate_id: str
) -> AssociationPreview:
    """Tell what :func:`associate` would do for ``certificate_id``; writes nothing."""
    certificate_id = validate_certificate_id(certificate_id)
    in_project = Device.project_id == project_id
    with db.session(read_only=True) as session:
        project = session.get(Project, project_id)
        if project is None:
            raise NotFound(f"cannot find project {project_id!r}")
        device = session.scalar(
            select(Device).where(in_project, Device.certificate_id == certificate_id)
        )
        rule: AssociationRule = "existing"
        if device is None:
            device = session.scalar(
                select(Device).where(
                    in_project,
                    Device.name == certificate_id,
                    Device.certificate_id.is_(None),
                )
            )
            rule = "adopt"
        if device is not None:
            if device.enabled:
                return AssociationPreview(rule, device.id, device.name)
            return AssociationPreview(
                rule,
                device.id,
                device.name,
                Reason.DEVICE_DISABLED,
                f"device {device.id} is disabled",
            )

        taken = _name_taken(session, project_id, certificate_id)
        rule = "create_with_suffix" if taken else "create"
        name = (
            f"{certificate_id}-{'X' * SUFFIX_HEX_DIGITS}" if taken else certificate_id
        )
        if project.require_manifest and not manifests.is_listed(
            session, project_id, certificate_id
        ):
            return AssociationPreview(
                rule,
                None,
                name,
                Reason.NOT_IN_MANIFEST,
                "the project requires a manifest, and no batch lists this "
                "certificate ID",
            )
        return AssociationPreview(rule, None, name)
