"""Device records of a project: create, look up, list, change.

Devices are usually created by the association rule in
:mod:`fleetgate.provisioning` when they first connect. The functions here
serve the operator: pre-provisioning a device by name, so that it is
adopted by the first certificate whose ID equals that name, and turning
devices on and off. Every lookup is scoped by project, so a device ID
from another project is NotFound.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetgate.errors import Conflict, InvalidInput, NotFound
from fleetgate.pki.identity import validate_certificate_id
from fleetgate.store import audit, quarantines
from fleetgate.store.database import MAX_PAGE, Database, PreparedRead
from fleetgate.store.models import Device
from fleetgate.store.projects import require_project

MAX_NAME_LENGTH = 200
MAX_PER_PAGE = 1000
# Bounds on one device record: at most about 56 KB of hardware IDs,
# tags and metadata together.
MAX_LABELS = 100
MAX_LABEL_LENGTH = 200
MAX_METADATA_BYTES = 16 * 1024


@dataclasses.dataclass(frozen=True)
class DeviceRecord:
    """A device as stored."""

    id: str
    project_id: str
    name: str
    certificate_id: str | None
    enabled: bool
    hardware_ids: tuple[str, ...]
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    last_certificate_fingerprint: str | None
    last_certificate_not_after: dt.datetime | None

    @classmethod
    def from_row(cls, row: Device) -> DeviceRecord:
        """Copy a device row into a record that outlives its session."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            name=row.name,
            certificate_id=row.certificate_id,
            enabled=row.enabled,
            hardware_ids=tuple(row.hardware_ids),
            tags=tuple(row.tags),
            metadata=dict(row.metadata_),
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            last_certificate_fingerprint=row.last_certificate_fingerprint,
            last_certificate_not_after=row.last_certificate_not_after,
        )


@dataclasses.dataclass(frozen=True)
class DevicePage:
    """One page of a device listing and the number of matches overall."""

    items: list[DeviceRecord]
    page: int
    per_page: int
    total: int


def create_device(
    db: Database,
    project_id: str,
    name: str,
    *,
    certificate_id: str | None = None,
    hardware_ids: Sequence[str] = (),
    tags: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
    actor: str | None = None,
) -> DeviceRecord:
    """Create a device ahead of its first connection.

    Raises NotFound for an unknown project and Conflict when the name or
    certificate ID is taken in the project. With ``actor`` the creation
    is audited.
    """
    name = validate_device_name(name)
    if certificate_id is not None:
        certificate_id = validate_certificate_id(certificate_id)

    row = Device(
        project_id=project_id,
        name=name,
        certificate_id=certificate_id,
        enabled=True,
        hardware_ids=validate_labels("hardware ID", hardware_ids),
        tags=validate_labels("tag", tags),
        metadata_=validate_metadata(metadata or {}),
    )
    try:
        with db.session() as session:
            require_project(session, project_id)
            session.add(row)
            session.flush()
            if actor is not None:
                _audit(
                    session,
                    actor,
                    "device.create",
                    row,
                    {"name": name, "certificateId": certificate_id},
                )
    except IntegrityError as exc:
        raise Conflict(
            f"cannot create device {name!r} in project {project_id!r}: "
            "a device with this name or certificate ID exists"
        ) from exc
    return DeviceRecord.from_row(row)


def get_device(db: Database, project_id: str, device_id: str) -> DeviceRecord:
    """Return one device of a project, or raise NotFound."""
    with db.session(read_only=True) as session:
        return DeviceRecord.from_row(require_device(session, project_id, device_id))


def device_enabled(db: Database, project_id: str, device_id: str) -> bool | None:
    """Return whether a device of a project is enabled, or None when it is missing.

    The gateway rechecks every open session every few seconds with this,
    so it is one plain DB-API read, not an ORM session loading the row.
    """
    row = _ENABLED_QUERY.fetch_one(db, project_id=project_id, device_id=device_id)
    return None if row is None else bool(row[0])


_ENABLED_QUERY = PreparedRead(
    select(Device.enabled).where(
        Device.project_id == bindparam("project_id"),
        Device.id == bindparam("device_id"),
    )
)


def find_device(db: Database, project_id: str, id_or_name: str) -> DeviceRecord:
    """Return the device with this ID, else the one with this name.

    Names are unique in a project, so at most one device matches each way.
    The ID is tried first, so a device named like another device's ID is
    reached by its own ID. Raises NotFound when neither matches.
    """
    in_project = Device.project_id == project_id
    with db.session(read_only=True) as session:
        require_project(session, project_id)
        row = session.scalar(select(Device).where(in_project, Device.id == id_or_name))
        if row is None:
            row = session.scalar(
                select(Device).where(in_project, Device.name == id_or_name)
            )
        if row is None:
            raise NotFound(
                f"cannot find device {id_or_name!r} in project {project_id!r}: "
                "no device has this ID or name"
            )
        return DeviceRecord.from_row(row)


def list_devices(
    db: Database,
    project_id: str,
    *,
    name: str | None = None,
    exact_name: str | None = None,
    page: int = 0,
    per_page: int = 100,
) -> DevicePage:
    """Return one page of a project's devices, ordered by name.

    ``name`` keeps the devices whose name contains it, ignoring case,
    and ``exact_name`` the device named exactly so. Pages count from 0.
    """
    if not 0 <= page <= MAX_PAGE:
        raise InvalidInput(f"cannot list devices: page {page} is outside 0-{MAX_PAGE}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(
            f"cannot list devices: per_page {per_page} is outside 1-{MAX_PER_PAGE}"
        )

    condition = Device.project_id == project_id
    if name:
        condition = condition & func.lower(Device.name).contains(
            name.lower(), autoescape=True
        )
    if exact_name is not None:
        condition = condition & (Device.name == exact_name)
    with db.session(read_only=True) as session:
        require_project(session, project_id)
        total = session.scalar(select(func.count()).where(condition)) or 0
        rows = session.scalars(
            select(Device)
            .where(condition)
            .order_by(Device.name)
            .offset(page * per_page)
            .limit(per_page)
        )
        devices = [DeviceRecord.from_row(row) for row in rows]
    return DevicePage(items=devices, page=page, per_page=per_page, total=total)


def update_device(
    db: Database,
    project_id: str,
    device_id: str,
    *,
    name: str | None = None,
    enabled: bool | None = None,
    certificate_id: str | None = None,
    hardware_ids: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    add_hardware_ids: Sequence[str] = (),
    remove_hardware_ids: Sequence[str] = (),
    add_tags: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
    actor: str | None = None,
) -> DeviceRecord:
    """Change the given fields of a device and leave those that are None.

    A certificate ID can be set once. Setting a different one on a
    device that has one raises Conflict, and so does a name or
    certificate ID that another device of the project has. The ``add_``
    and ``remove_`` lists edit the hardware IDs and tags after any full
    replacement. With ``actor`` the change is audited, naming the fields
    that changed.
    """
    if name is not None:
        name = validate_device_name(name)
    if certificate_id is not None:
        certificate_id = validate_certificate_id(certificate_id)
    if metadata is not None:
        metadata = validate_metadata(metadata)

    try:
        with db.session() as session:
            row = require_device(session, project_id, device_id, for_update=True)
            before = DeviceRecord.from_row(row)
            if certificate_id is not None:
                row.certificate_id = certificate_id
            if name is not None:
                row.name = name
            if enabled is not None:
                row.enabled = enabled
                # The operator's choice outlasts any quarantine's release.
                quarantines.forget_device(session, row.id)
            row.hardware_ids = _edited_labels(
                "hardware ID",
                row.hardware_ids if hardware_ids is None else hardware_ids,
                add_hardware_ids,
                remove_hardware_ids,
            )
            row.tags = _edited_labels(
                "tag", row.tags if tags is None else tags, add_tags, remove_tags
            )
            if metadata is not None:
                row.metadata_ = metadata
            session.flush()
            after = DeviceRecord.from_row(row)
            changed = _changed_fields(before, after)
            if actor is not None and changed:
                details: dict[str, Any] = {
                    "changed": [_AUDITED_FIELDS[field] for field in changed]
                }
                for field in ("name", "enabled", "certificate_id"):
                    if field in changed:
                        details[_AUDITED_FIELDS[field]] = getattr(after, field)
                _audit(session, actor, "device.update", row, details)
            return after
    except IntegrityError as exc:
        raise Conflict(
            f"cannot update device {device_id!r} in project {project_id!r}: "
            "another device has this name or certificate ID"
        ) from exc


def set_certificate_id(
    db: Database,
    project_id: str,
    device_id: str,
    certificate_id: str,
    *,
    actor: str | None = None,
) -> DeviceRecord:
    """Set a device's certificate ID, which can be done once.

    Setting the same value again changes nothing. Another value raises
    Conflict.
    """
    return update_device(
        db, project_id, device_id, certificate_id=certificate_id, actor=actor
    )


def set_device_enabled(
    db: Database,
    project_id: str,
    device_id: str,
    enabled: bool,
    *,
    actor: str | None = None,
) -> DeviceRecord:
    """Enable or disable a device. A disabled device cannot connect."""
    return update_device(db, project_id, device_id, enabled=enabled, actor=actor)


def delete_device(
    db: Database, project_id: str, device_id: str, *, actor: str | None = None
) -> None:
    """Remove a device and its state, or raise NotFound."""
    with db.session() as session:
        row = require_device(session, project_id, device_id)
        session.delete(row)
        if actor is not None:
            details = {"name": row.name, "certificateId": row.certificate_id}
            _audit(session, actor, "device.delete", row, details)


def require_device(
    session: Session, project_id: str, device_id: str, *, for_update: bool = False
) -> Device:
    """Load a device row of a project in ``session``, or raise NotFound."""
    query = select(Device).where(
        Device.id == device_id, Device.project_id == project_id
    )
    if for_update:
        query = query.with_for_update()
    row = session.scalar(query)
    if row is None:
        raise NotFound(f"cannot find device {device_id!r} in project {project_id!r}")
    return row


def validate_device_name(name: str) -> str:
    """Return ``name`` when it can name a device, or raise InvalidInput."""
    if not name or name != name.strip():
        raise InvalidInput(
            f"cannot use device name {name!r}: it is empty or starts or "
            "ends with white space"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"cannot use device name of {len(name)} characters: "
            f"the maximum is {MAX_NAME_LENGTH}"
        )
    if any(not character.isprintable() for character in name):
        raise InvalidInput(
            f"cannot use device name {name!r}: it contains control characters"
        )
    return name


def validate_labels(kind: str, values: Sequence[str]) -> list[str]:
    """Return hardware IDs or tags as a list without repeats, or raise InvalidInput."""
    if isinstance(values, str):
        raise InvalidInput(f"cannot use {kind}s {values!r}: expected a list")
    labels: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value or value != value.strip():
            raise InvalidInput(
                f"cannot use {kind} {value!r}: expected a non-empty string "
                "without leading or trailing white space"
            )
        if len(value) > MAX_LABEL_LENGTH or not value.isprintable():
            raise InvalidInput(
                f"cannot use {kind} {value[:40]!r}: expected at most "
                f"{MAX_LABEL_LENGTH} printable characters"
            )
        if value not in labels:
            labels.append(value)
    if len(labels) > MAX_LABELS:
        raise InvalidInput(
            f"cannot use {len(labels)} {kind}s: the maximum is {MAX_LABELS}"
        )
    return labels


def validate_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of device metadata, a JSON object, or raise InvalidInput."""
    if not isinstance(metadata, dict):
        raise InvalidInput(
            "cannot use device metadata: expected a JSON object, "
            f"not {type(metadata).__name__}"
        )
    # PostgreSQL's json type rejects NaN and infinity, so every backend
    # rejects them alike.
    try:
        encoded = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"cannot use device metadata: not JSON ({exc})") from exc
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidInput(
            f"cannot use device metadata of {len(encoded)} bytes: "
            f"the maximum is {MAX_METADATA_BYTES}"
        )
    copied: dict[str, Any] = json.loads(encoded)
    return copied


# Device fields whose changes are audited, under their management API names.
_AUDITED_FIELDS = {
    "name": "name",
    "enabled": "enabled",
    "certificate_id": "certificateId",
    "hardware_ids": "hardwareIds",
    "tags": "tagIds",
    "metadata": "metadata",
}


def _changed_fields(before: DeviceRecord, after: DeviceRecord) -> list[str]:
    return [
        field
        for field in _AUDITED_FIELDS
        if getattr(before, field) != getattr(after, field)
    ]


def _edited_labels(
    kind: str,
    current: Sequence[str],
    added: Sequence[str],
    removed: Sequence[str],
) -> list[str]:
    removed_set = set(validate_labels(kind, removed))
    remaining = [label for label in current if label not in removed_set]
    return validate_labels(kind, [*remaining, *validate_labels(kind, added)])


def _audit(
    session: Session,
    actor: str,
    action: str,
    row: Device,
    details: dict[str, Any],
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        project_id=row.project_id,
        target_type="device",
        target_id=row.id,
        details=details,
    )
