"""Firmware component state that devices report on ``.u/c/<package>``.

Golioth's firmware SDK reports each change of its update state machine:
the state (idle, downloading, downloaded, updating), a reason, the
package, and its current and target versions. Every report is kept, so
the latest one per package gives a device's firmware status and the rest
its history. A report may name a package that no artifact has, because
a device reports its running firmware before any release exists.
Reports go when their device is deleted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from sqlalchemy import func, select

from fleetgate.errors import InvalidInput
from fleetgate.store.batch import BatchTransaction, batch_transaction, prepared_insert
from fleetgate.store.database import MAX_PAGE, Database
from fleetgate.store.devices import require_device
from fleetgate.store.models import OtaComponentReport, utcnow

MAX_PER_PAGE = 1000


class ComponentState(enum.IntEnum):
    """The SDK's ``enum golioth_ota_state``."""

    IDLE = 0
    DOWNLOADING = 1
    DOWNLOADED = 2
    UPDATING = 3


class ComponentReason(enum.IntEnum):
    """The SDK's ``enum golioth_ota_reason``."""

    READY = 0
    FIRMWARE_UPDATED_SUCCESSFULLY = 1
    NOT_ENOUGH_FLASH_MEMORY = 2
    OUT_OF_RAM = 3
    CONNECTION_LOST = 4
    INTEGRITY_CHECK_FAILURE = 5
    UNSUPPORTED_PACKAGE_TYPE = 6
    INVALID_URI = 7
    FIRMWARE_UPDATE_FAILED = 8
    UNSUPPORTED_PROTOCOL = 9


@dataclasses.dataclass(frozen=True)
class ComponentReport:
    """One component state report as stored."""

    id: int
    device_id: str
    package: str
    state: int
    reason: int
    current_version: str | None
    target_version: str | None
    received_at: dt.datetime

    @classmethod
    def from_row(cls, row: OtaComponentReport) -> ComponentReport:
        """Copy a report row into a record that outlives its session."""
        return cls(
            id=row.id,
            device_id=row.device_id,
            package=row.package,
            state=row.state,
            reason=row.reason,
            current_version=row.current_version,
            target_version=row.target_version,
            received_at=row.received_at,
        )

    @property
    def state_name(self) -> str:
        """The state's name in lowercase, or its number when unknown."""
        return _name(ComponentState, self.state)

    @property
    def reason_name(self) -> str:
        """The reason's name in lowercase, or its number when unknown."""
        return _name(ComponentReason, self.reason)


@dataclasses.dataclass(frozen=True)
class ReportPage:
    """One page of a device's reports, newest first, and the total count."""

    items: list[ComponentReport]
    page: int
    per_page: int
    total: int


def add_report(
    db: Database,
    *,
    project_id: str,
    device_id: str,
    package: str,
    state: int,
    reason: int,
    current_version: str | None,
    target_version: str | None,
) -> ComponentReport:
    """Store one report, stamped with the time of receipt."""
    with batch_transaction(db) as transaction:
        return add_report_in(
            transaction,
            project_id=project_id,
            device_id=device_id,
            package=package,
            state=state,
            reason=reason,
            current_version=current_version,
            target_version=target_version,
        )


def add_report_in(
    transaction: BatchTransaction,
    *,
    project_id: str,
    device_id: str,
    package: str,
    state: int,
    reason: int,
    current_version: str | None,
    target_version: str | None,
) -> ComponentReport:
    """Store one report in a batch, stamped with the time of receipt.

    Raises NotFound when the device does not exist (any more).
    """
    transaction.lock_device(device_id, project_id)
    received_at = utcnow()
    row = transaction.fetch_one(
        _INSERT_REPORT,
        {
            "project_id": project_id,
            "device_id": device_id,
            "package": package,
            "state": state,
            "reason": reason,
            "current_version": current_version,
            "target_version": target_version,
            "received_at": received_at,
        },
    )
    assert row is not None
    return ComponentReport(
        id=int(row[0]),
        device_id=device_id,
        package=package,
        state=state,
        reason=reason,
        current_version=current_version,
        target_version=target_version,
        received_at=received_at,
    )


_INSERT_REPORT = prepared_insert(
    OtaComponentReport,
    (
        "project_id",
        "device_id",
        "package",
        "state",
        "reason",
        "current_version",
        "target_version",
        "received_at",
    ),
)


def latest_reports(
    db: Database, project_id: str, device_id: str
) -> list[ComponentReport]:
    """Return a device's latest report of each package, by package."""
    with db.session(read_only=True) as session:
        require_device(session, project_id, device_id)
        latest = (
            select(func.max(OtaComponentReport.id))
            .where(OtaComponentReport.device_id == device_id)
            .group_by(OtaComponentReport.package)
        )
        rows = session.scalars(
            select(OtaComponentReport)
            .where(OtaComponentReport.id.in_(latest))
            .order_by(OtaComponentReport.package)
        )
        return [ComponentReport.from_row(row) for row in rows]


def report_history(
    db: Database,
    project_id: str,
    device_id: str,
    *,
    package: str | None = None,
    page: int = 0,
    per_page: int = 100,
) -> ReportPage:
    """Return one page of a device's reports, newest first."""
    if not 0 <= page <= MAX_PAGE:
        raise InvalidInput(f"cannot list reports: page {page} is outside 0-{MAX_PAGE}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(
            f"cannot list reports: per_page {per_page} is outside 1-{MAX_PER_PAGE}"
        )
    condition = OtaComponentReport.device_id == device_id
    if package is not None:
        condition = condition & (OtaComponentReport.package == package)
    with db.session(read_only=True) as session:
        require_device(session, project_id, device_id)
        total = session.scalar(select(func.count()).where(condition)) or 0
        rows = session.scalars(
            select(OtaComponentReport)
            .where(condition)
            .order_by(OtaComponentReport.id.desc())
            .offset(page * per_page)
            .limit(per_page)
        )
        items = [ComponentReport.from_row(row) for row in rows]
    return ReportPage(items=items, page=page, per_page=per_page, total=total)


def _name(kind: type[enum.IntEnum], value: int) -> str:
    try:
        return kind(value).name.lower()
    except ValueError:
        return str(value)
