"""Time-range paging shared by device logs and LightDB Stream records.

Both tables keep rows per device with the time the gateway received
them. A query names a device, an optional ``[start, end)`` range of
receipt times and a page, and gets the rows newest first with the
number of rows in the range.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleetgate.errors import InvalidInput, NotFound
from fleetgate.store.database import Database
from fleetgate.store.models import Device, DeviceLog, StreamRecord

MAX_PER_PAGE = 1000

Row = DeviceLog | StreamRecord
Item = TypeVar("Item")


@dataclasses.dataclass(frozen=True)
class TimeRange:
    """Receipt times from ``start`` (inclusive) to ``end`` (exclusive)."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidInput(
                    f"cannot query by time: {name} {value.isoformat()} has no "
                    "time zone, so add one such as Z for UTC"
                )
        if self.start is not None and self.end is not None and self.end < self.start:
            raise InvalidInput(
                f"cannot query by time: end {self.end.isoformat()} is before "
                f"start {self.start.isoformat()}"
            )


ALL_TIME = TimeRange()


@dataclasses.dataclass(frozen=True)
class TimelinePage(Generic[Item]):
    """One page of a device's records, newest first, and the total in range."""

    items: list[Item]
    page: int
    per_page: int
    total: int


def query_page(
    db: Database,
    model: type[Row],
    convert: Callable[[Any], Item],
    *,
    project_id: str,
    device_id: str,
    window: TimeRange,
    page: int,
    per_page: int,
) -> TimelinePage[Item]:
    """Return one page of ``model`` rows of a device within ``window``."""
    if page < 0:
        raise InvalidInput(f"cannot list records: page {page} is negative")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(
            f"cannot list records: per_page {per_page} is outside 1-{MAX_PER_PAGE}"
        )

    conditions = [model.device_id == device_id, model.project_id == project_id]
    if window.start is not None:
        conditions.append(model.received_at >= window.start)
    if window.end is not None:
        conditions.append(model.received_at < window.end)

    with db.session(read_only=True) as session:
        require_device(session, project_id, device_id)
        total = session.scalar(select(func.count(model.id)).where(*conditions)) or 0
        rows = session.scalars(
            select(model)
            .where(*conditions)
            .order_by(model.received_at.desc(), model.id.desc())
            .offset(page * per_page)
            .limit(per_page)
        )
        items = [convert(row) for row in rows]
    return TimelinePage(items=items, page=page, per_page=per_page, total=total)


def require_device(session: Session, project_id: str, device_id: str) -> None:
    """Raise NotFound unless the device exists in the project."""
    found = session.scalar(
        select(Device.id).where(Device.id == device_id, Device.project_id == project_id)
    )
    if found is None:
        raise NotFound(f"cannot find device {device_id!r} in project {project_id!r}")
