"""Quarantines: disable many devices at once, and restore exactly those.

A quarantine targets every device of a manifest batch, or every device
whose last verified chain leads to one CA certificate (by its SHA-256
fingerprint). A device's chain, recorded at association in
``devices.ca_chain``, ends at the registered CA it was verified against,
so a CA's devices also include those under the registered CA
certificates that it issued, directly or through others.
It disables the matching devices that are enabled and remembers them.
Releasing it re-enables the devices it remembers, unless another active
quarantine still holds them.

A device enabled or disabled by hand while quarantined leaves the
quarantine's care (see :func:`forget_device`), so a release never undoes
an operator's own decision, made before or during the quarantine.
Devices that only ever connected before chains were recorded have no
``ca_chain`` and are not matched by CA.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fleetgate.errors import Conflict, InvalidInput, NotFound
from fleetgate.store import audit, manifests
from fleetgate.store.database import Database
from fleetgate.store.models import (
    CaCertificate,
    Device,
    Quarantine,
    QuarantinedDevice,
    utcnow,
)
from fleetgate.store.projects import require_project

QuarantineKind = Literal["batch", "ca"]
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class QuarantineRecord:
    """A quarantine and the devices it holds (or restored, once released)."""

    id: str
    project_id: str
    kind: QuarantineKind
    target: str
    actor: str
    created_at: dt.datetime
    released_at: dt.datetime | None
    device_ids: tuple[str, ...]

    @property
    def active(self) -> bool:
        """Whether the quarantine still holds its devices."""
        return self.released_at is None


def normalize_fingerprint(value: str) -> str:
    """Return a SHA-256 fingerprint as 64 lowercase hex digits, or raise."""
    digits = value.replace(":", "").strip().lower()
    if not _FINGERPRINT.fullmatch(digits):
        raise InvalidInput(
            f"cannot use CA fingerprint {value!r}: expected the 64 hex digits "
            "of a SHA-256 fingerprint, as fleetgate pki explain --json shows "
            "for each certificate of a chain"
        )
    return digits


def start_quarantine(
    db: Database,
    project_id: str,
    *,
    batch: str | None = None,
    ca_fingerprint: str | None = None,
    actor: str,
) -> QuarantineRecord:
    """Disable the devices of a batch or of a CA certificate; audited.

    Exactly one of ``batch`` and ``ca_fingerprint`` is given. The record
    lists every device held, including those that another active
    quarantine had already disabled, so closing sessions covers them all.
    """
    if (batch is None) == (ca_fingerprint is None):
        raise InvalidInput(
            "cannot start quarantine: give either a manifest batch or a CA fingerprint"
        )
    kind: QuarantineKind = "batch" if batch is not None else "ca"
    target = batch if batch is not None else normalize_fingerprint(ca_fingerprint or "")

    with db.session() as session:
        require_project(session, project_id)
        matched = (
            _batch_devices(session, project_id, target)
            if kind == "batch"
            else _ca_devices(session, project_id, target)
        )
        held = _held_devices(session, [device.id for device in matched])
        members = [device for device in matched if device.enabled or device.id in held]

        row = Quarantine(project_id=project_id, kind=kind, target=target, actor=actor)
        session.add(row)
        session.flush()
        for device in members:
            device.enabled = False
            session.add(QuarantinedDevice(quarantine_id=row.id, device_id=device.id))
        audit.record(
            session,
            actor=actor,
            action="quarantine.start",
            project_id=project_id,
            target_type="quarantine",
            target_id=row.id,
            details={"kind": kind, "target": target, "devices": len(members)},
        )
        session.flush()
        return _record(row, [device.id for device in members])


def release_quarantine(
    db: Database, project_id: str, quarantine_id: str, *, actor: str
) -> QuarantineRecord:
    """Re-enable the devices a quarantine disabled and end it; audited.

    The returned record lists the devices re-enabled: those still in the
    quarantine's care and held by no other active quarantine.
    """
    with db.session() as session:
        row = _require_quarantine(session, project_id, quarantine_id)
        if row.released_at is not None:
            raise Conflict(
                f"cannot release quarantine {quarantine_id}: it was released "
                f"at {row.released_at.isoformat()}"
            )
        row.released_at = utcnow()
        member_ids = _member_ids(session, row.id)
        still_held = _held_devices(session, member_ids, excluding=row.id)
        restored = [
            device_id for device_id in member_ids if device_id not in still_held
        ]
        if restored:
            session.execute(
                update(Device)
                .where(Device.project_id == project_id, Device.id.in_(restored))
                .values(enabled=True)
            )
        audit.record(
            session,
            actor=actor,
            action="quarantine.release",
            project_id=project_id,
            target_type="quarantine",
            target_id=row.id,
            details={"devices": len(restored)},
        )
        return _record(row, restored)


def list_quarantines(db: Database, project_id: str) -> list[QuarantineRecord]:
    """Return the project's quarantines, newest first, with their devices."""
    with db.session(read_only=True) as session:
        require_project(session, project_id)
        rows = session.scalars(
            select(Quarantine)
            .where(Quarantine.project_id == project_id)
            .order_by(Quarantine.created_at.desc(), Quarantine.id)
        )
        return [_record(row, _member_ids(session, row.id)) for row in rows]


def get_quarantine(
    db: Database, project_id: str, quarantine_id: str
) -> QuarantineRecord:
    """Return one quarantine of a project, or raise NotFound."""
    with db.session(read_only=True) as session:
        row = _require_quarantine(session, project_id, quarantine_id)
        return _record(row, _member_ids(session, row.id))


def anchored_device_ids(db: Database, project_id: str, fingerprint: str) -> list[str]:
    """Return the IDs of the devices whose recorded chain contains a CA certificate.

    These are the devices that a disabled or removed CA certificate
    stops serving, because every registered CA certificate is an anchor.
    """
    with db.session(read_only=True) as session:
        return [
            device.id
            for device in _chain_devices(session, project_id, {fingerprint}, lock=False)
        ]


def forget_device(session: Session, device_id: str) -> None:
    """Take a device out of the care of every active quarantine.

    Called when an operator sets a device's enabled flag by hand, so that
    a later release does not override that choice.
    """
    active = select(Quarantine.id).where(Quarantine.released_at.is_(None))
    memberships = session.scalars(
        select(QuarantinedDevice).where(
            QuarantinedDevice.device_id == device_id,
            QuarantinedDevice.quarantine_id.in_(active),
        )
    )
    for membership in memberships:
        session.delete(membership)


def _batch_devices(session: Session, project_id: str, batch: str) -> list[Device]:
    certificate_ids = manifests.batch_certificate_ids(session, project_id, batch)
    devices: list[Device] = []
    # Bounded IN lists: SQLite allows 32766 parameters per statement.
    for start in range(0, len(certificate_ids), 1000):
        devices.extend(
            session.scalars(
                select(Device)
                .where(
                    Device.project_id == project_id,
                    Device.certificate_id.in_(certificate_ids[start : start + 1000]),
                )
                .with_for_update()
            )
        )
    return devices


def _ca_devices(session: Session, project_id: str, fingerprint: str) -> list[Device]:
    fingerprints = _issued_fingerprints(session, project_id, fingerprint)
    devices = _chain_devices(session, project_id, fingerprints, lock=True)
    if not devices and not _is_registered(session, project_id, fingerprint):
        raise NotFound(
            f"cannot find CA certificate {fingerprint} in project {project_id!r}: "
            "no registered CA certificate and no device's chain has this "
            "fingerprint; fleetgate ca list shows the registered ones"
        )
    return devices


def _is_registered(session: Session, project_id: str, fingerprint: str) -> bool:
    found = session.scalar(
        select(CaCertificate.id).where(
            CaCertificate.project_id == project_id,
            CaCertificate.fingerprint == fingerprint,
        )
    )
    return found is not None


def _issued_fingerprints(
    session: Session, project_id: str, fingerprint: str
) -> set[str]:
    """Return ``fingerprint`` and those of the registered CAs below it.

    A registered CA certificate is below when the given one issued it,
    directly or through other registered ones, as its issuer name and
    signature show.
    """
    rows = session.execute(
        select(CaCertificate.fingerprint, CaCertificate.der).where(
            CaCertificate.project_id == project_id
        )
    )
    registered = {
        row.fingerprint: x509.load_der_x509_certificate(row.der) for row in rows
    }
    found = {fingerprint}
    issuers = [registered[fingerprint]] if fingerprint in registered else []
    # Each registered certificate joins at most once, which bounds the loop.
    while issuers:
        issuer = issuers.pop()
        for candidate_fingerprint, candidate in registered.items():
            if candidate_fingerprint not in found and _issued_by(candidate, issuer):
                found.add(candidate_fingerprint)
                issuers.append(candidate)
    return found


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    if certificate.issuer != issuer.subject:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chain_devices(
    session: Session, project_id: str, fingerprints: set[str], *, lock: bool
) -> list[Device]:
    """Return the devices whose recorded chain contains any of ``fingerprints``."""
    # NOTE: the chain is a JSON column, so the match runs in Python over
    # the project's devices that have one. A fleet of millions would need
    # an indexed table of (device, CA fingerprint) instead.
    query = select(Device).where(
        Device.project_id == project_id, Device.ca_chain.is_not(None)
    )
    if lock:
        query = query.with_for_update()
    return [
        device
        for device in session.scalars(query)
        if any(ca.get("fingerprint") in fingerprints for ca in device.ca_chain or [])
    ]


def _held_devices(
    session: Session, device_ids: list[str], *, excluding: str | None = None
) -> set[str]:
    """Return which of ``device_ids`` an active quarantine holds."""
    if not device_ids:
        return set()
    active = select(Quarantine.id).where(Quarantine.released_at.is_(None))
    if excluding is not None:
        active = active.where(Quarantine.id != excluding)
    held: set[str] = set()
    for start in range(0, len(device_ids), 1000):
        held.update(
            session.scalars(
                select(QuarantinedDevice.device_id).where(
                    QuarantinedDevice.device_id.in_(device_ids[start : start + 1000]),
                    QuarantinedDevice.quarantine_id.in_(active),
                )
            )
        )
    return held


def _member_ids(session: Session, quarantine_id: str) -> list[str]:
    return list(
        session.scalars(
            select(QuarantinedDevice.device_id)
            .where(QuarantinedDevice.quarantine_id == quarantine_id)
            .order_by(QuarantinedDevice.device_id)
        )
    )


def _require_quarantine(
    session: Session, project_id: str, quarantine_id: str
) -> Quarantine:
    row = session.get(Quarantine, quarantine_id)
    if row is None or row.project_id != project_id:
        raise NotFound(
            f"cannot find quarantine {quarantine_id!r} in project {project_id!r}"
        )
    return row


def _record(row: Quarantine, device_ids: list[str]) -> QuarantineRecord:
    kind: QuarantineKind = "batch" if row.kind == "batch" else "ca"
    return QuarantineRecord(
        id=row.id,
        project_id=row.project_id,
        kind=kind,
        target=row.target,
        actor=row.actor,
        created_at=row.created_at,
        released_at=row.released_at,
        device_ids=tuple(device_ids),
    )
