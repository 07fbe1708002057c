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
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetgate.errors import Conflict, InvalidInput, NotFound
from fleetgate.pki.identity import validate_certificate_id
from fleetgate.store.database import Database
from fleetgate.store.models import Device
from fleetgate.store.projects import require_project

MAX_NAME_LENGTH = 200
MAX_PER_PAGE = 1000


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
) -> DeviceRecord:
    """Create a device ahead of its first connection.

    Raises NotFound for an unknown project and Conflict when the name or
    certificate ID is taken in the project.
    """
    name = validate_device_name(name)
    if certificate_id is not None:
        certificate_id = validate_certificate_id(certificate_id)

    row = Device(
        project_id=project_id,
        name=name,
        certificate_id=certificate_id,
        enabled=True,
        hardware_ids=list(hardware_ids),
        tags=list(tags),
        metadata_=dict(metadata or {}),
    )
    try:
        with db.session() as session:
            require_project(session, project_id)
            session.add(row)
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


def list_devices(
    db: Database,
    project_id: str,
    *,
    name: str | None = None,
    page: int = 0,
    per_page: int = 100,
) -> DevicePage:
    """Return one page of a project's devices, ordered by name.

    ``name`` keeps the devices whose name contains it, ignoring case.
    Pages count from 0.
    """
    if page < 0:
        raise InvalidInput(f"cannot list devices: page {page} is negative")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(
            f"cannot list devices: per_page {per_page} is outside 1-{MAX_PER_PAGE}"
        )

    condition = Device.project_id == project_id
    if name:
        condition = condition & func.lower(Device.name).contains(
            name.lower(), autoescape=True
        )
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
) -> DeviceRecord:
    """Change the given fields of a device and leave those that are None.

    A certificate ID can be set once. Setting a different one on a
    device that has one raises Conflict, and so does a name or
    certificate ID that another device of the project has.
    """
    if name is not None:
        name = validate_device_name(name)
    if certificate_id is not None:
        certificate_id = validate_certificate_id(certificate_id)

    try:
        with db.session() as session:
            row = require_device(session, project_id, device_id, for_update=True)
            if certificate_id is not None:
                row.certificate_id = certificate_id
            if name is not None:
                row.name = name
            if enabled is not None:
                row.enabled = enabled
            if hardware_ids is not None:
                row.hardware_ids = list(hardware_ids)
            if tags is not None:
                row.tags = list(tags)
            if metadata is not None:
                row.metadata_ = dict(metadata)
            session.flush()
            return DeviceRecord.from_row(row)
    except IntegrityError as exc:
        raise Conflict(
            f"cannot update device {device_id!r} in project {project_id!r}: "
            "another device has this name or certificate ID"
        ) from exc


def set_certificate_id(
    db: Database, project_id: str, device_id: str, certificate_id: str
) -> DeviceRecord:
    """Set a device's certificate ID, which can be done once.

    Setting the same value again changes nothing. Another value raises
    Conflict.
    """
    return update_device(db, project_id, device_id, certificate_id=certificate_id)


def set_device_enabled(
    db: Database, project_id: str, device_id: str, enabled: bool
) -> DeviceRecord:
    """Enable or disable a device. A disabled device cannot connect."""
    return update_device(db, project_id, device_id, enabled=enabled)


def delete_device(db: Database, project_id: str, device_id: str) -> None:
    """Remove a device and its state, or raise NotFound."""
    with db.session() as session:
        session.delete(require_device(session, project_id, device_id))


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
