"""Device settings: project-wide key/value pairs with per-device overrides.

A device's effective settings are its project's settings with the
device's overrides applied on top. Values are integers, floats,
booleans or strings, the types Golioth's firmware SDK decodes
(``src/settings.c``). Keys have letters, digits and underscores, at most
63 characters, the longest name the SDK compares in full.

Every committed change is published to
:data:`fleetgate.store.changes.settings_changes` with the project ID and
the device ID in the path, or an empty path for a project-wide change.

The settings version is the time of the latest change to the rows that
make up a device's settings, in milliseconds since the Unix epoch, which
the SDK echoes back in its status report.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fleetgate.errors import InvalidInput, NotFound
from fleetgate.store import audit
from fleetgate.store.changes import settings_changes
from fleetgate.store.database import Database
from fleetgate.store.models import Device, Project, Setting, utcnow

SettingValue = int | float | bool | str

MAX_KEY_LENGTH = 63
MAX_SETTINGS = 256
MAX_STRING_LENGTH = 1024
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_]+")
# The SDK registers integer settings as int32_t.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class SettingsRecord:
    """A set of settings and the version of its latest change."""

    settings: dict[str, SettingValue]
    version: int


@dataclasses.dataclass(frozen=True)
class DeviceSettingsRecord:
    """A device's effective settings and the overrides that shaped them."""

    settings: dict[str, SettingValue]
    overrides: dict[str, SettingValue]
    version: int


def get_project_settings(db: Database, project_id: str) -> SettingsRecord:
    """Return a project's settings; raises NotFound for an unknown project."""
    with db.session(read_only=True) as session:
        _require_project(session, project_id)
        rows = _rows(session, project_id, None)
    return SettingsRecord({row.key: row.value for row in rows}, _version(rows))


def get_device_settings(
    db: Database, project_id: str, device_id: str
) -> DeviceSettingsRecord:
    """Return a device's effective settings; raises NotFound for another project's."""
    with db.session(read_only=True) as session:
        _require_device(session, project_id, device_id)
        project_rows = _rows(session, project_id, None)
        device_rows = _rows(session, project_id, device_id)
    settings = {row.key: row.value for row in project_rows}
    overrides = {row.key: row.value for row in device_rows}
    settings.update(overrides)
    return DeviceSettingsRecord(
        settings, overrides, _version([*project_rows, *device_rows])
    )


def replace_project_settings(
    db: Database,
    project_id: str,
    settings: Mapping[str, Any],
    *,
    actor: str | None = None,
) -> SettingsRecord:
    """Replace every project-level setting with ``settings``."""
    values = validate_settings(settings)
    with db.session() as session:
        _require_project(session, project_id, for_update=True)
        _replace(session, project_id, None, values)
        if actor is not None:
            _audit(session, actor, "settings.replace", project_id, None, values)
        rows = _rows(session, project_id, None)
        record = SettingsRecord({row.key: row.value for row in rows}, _version(rows))
    settings_changes.publish(project_id, ())
    return record


def replace_device_settings(
    db: Database,
    project_id: str,
    device_id: str,
    overrides: Mapping[str, Any],
    *,
    actor: str | None = None,
) -> None:
    """Replace a device's overrides with ``overrides``."""
    values = validate_settings(overrides)
    with db.session() as session:
        _require_device(session, project_id, device_id, for_update=True)
        _replace(session, project_id, device_id, values)
        if actor is not None:
            _audit(session, actor, "settings.replace", project_id, device_id, values)
    settings_changes.publish(project_id, (device_id,))


def delete_device_settings(
    db: Database, project_id: str, device_id: str, *, actor: str | None = None
) -> None:
    """Remove a device's overrides, so the project's settings apply to it."""
    with db.session() as session:
        _require_device(session, project_id, device_id, for_update=True)
        _replace(session, project_id, device_id, {})
        if actor is not None:
            _audit(session, actor, "settings.delete", project_id, device_id, {})
    settings_changes.publish(project_id, (device_id,))


def validate_settings(settings: Mapping[str, Any]) -> dict[str, SettingValue]:
    """Check keys and values against the SDK's limits; raise InvalidInput."""
    if not isinstance(settings, Mapping):
        raise InvalidInput("cannot store settings: send a JSON object of key/values")
    if len(settings) > MAX_SETTINGS:
        raise InvalidInput(
            f"cannot store {len(settings)} settings: the maximum is {MAX_SETTINGS}"
        )
    values: dict[str, SettingValue] = {}
    for key, value in settings.items():
        if (
            not isinstance(key, str)
            or len(key) > MAX_KEY_LENGTH
            or not _KEY_PATTERN.fullmatch(key)
        ):
            raise InvalidInput(
                f"invalid setting key {key!r}: use 1 to {MAX_KEY_LENGTH} letters, "
                "digits or underscores"
            )
        values[key] = _validate_value(key, value)
    return values


def _validate_value(key: str, value: Any) -> SettingValue:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT32_MIN <= value <= INT32_MAX:
            raise InvalidInput(
                f"invalid value of setting {key!r}: {value} is outside the "
                "32-bit signed range that devices decode"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"invalid value of setting {key!r}: not finite")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise InvalidInput(
                f"invalid value of setting {key!r}: {len(value)} characters "
                f"exceed the maximum of {MAX_STRING_LENGTH}"
            )
        return value
    raise InvalidInput(
        f"invalid value of setting {key!r}: use an integer, float, boolean "
        f"or string, not {type(value).__name__}"
    )


def _replace(
    session: Session,
    project_id: str,
    device_id: str | None,
    values: dict[str, SettingValue],
) -> None:
    session.execute(
        delete(Setting).where(
            Setting.project_id == project_id, _device_clause(device_id)
        )
    )
    now = utcnow()
    for key, value in values.items():
        session.add(
            Setting(
                project_id=project_id,
                device_id=device_id,
                key=key,
                value=value,
                updated_at=now,
            )
        )
    session.flush()


def _rows(session: Session, project_id: str, device_id: str | None) -> list[Setting]:
    query = select(Setting).where(
        Setting.project_id == project_id, _device_clause(device_id)
    )
    return list(session.scalars(query.order_by(Setting.key)))


def _device_clause(device_id: str | None) -> Any:
    if device_id is None:
        return Setting.device_id.is_(None)
    return Setting.device_id == device_id


def _version(rows: list[Setting]) -> int:
    # NOTE: removing every override of a device can lower its version,
    # because no row is left to carry the time of that change.
    if not rows:
        return 0
    latest = max(row.updated_at for row in rows)
    return int(latest.timestamp() * 1000)


def _require_project(
    session: Session, project_id: str, *, for_update: bool = False
) -> None:
    query = select(Project.id).where(Project.id == project_id)
    if for_update:
        query = query.with_for_update()
    if session.scalar(query) is None:
        raise NotFound(f"cannot find project {project_id!r}")


def _require_device(
    session: Session, project_id: str, device_id: str, *, for_update: bool = False
) -> None:
    query = select(Device.id).where(
        Device.id == device_id, Device.project_id == project_id
    )
    if for_update:
        query = query.with_for_update()
    if session.scalar(query) is None:
        raise NotFound(f"cannot find device {device_id!r} in project {project_id!r}")


def _audit(
    session: Session,
    actor: str,
    action: str,
    project_id: str,
    device_id: str | None,
    values: dict[str, SettingValue],
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        project_id=project_id,
        target_type="project" if device_id is None else "device",
        target_id=project_id if device_id is None else device_id,
        details={"keys": sorted(values)},
    )
