"""Log entries that devices post, stored as received.

An entry has a level, the module that wrote it, a message and any other
attributes as metadata. The gateway stamps it with the time of receipt.
Entries of a deleted device go with it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from fleetgate.store.batch import BatchTransaction, batch_transaction, prepared_insert
from fleetgate.store.database import Database
from fleetgate.store.models import DeviceLog, utcnow
from fleetgate.store.timeline import ALL_TIME, TimelinePage, TimeRange, query_page

# Lengths of the columns; longer values are cut to fit.
MAX_LEVEL_LENGTH = 16
MAX_MODULE_LENGTH = 128


@dataclasses.dataclass(frozen=True)
class LogEntry:
    """A device log entry as stored."""

    id: int
    project_id: str
    device_id: str
    received_at: dt.datetime
    level: str
    module: str
    message: str
    metadata: dict[str, Any]

    @classmethod
    def from_row(cls, row: DeviceLog) -> LogEntry:
        """Copy a log row into a record that outlives its session."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            device_id=row.device_id,
            received_at=row.received_at,
            level=row.level,
            module=row.module,
            message=row.message,
            metadata=dict(row.metadata_),
        )


def add_log_entry(
    db: Database,
    *,
    project_id: str,
    device_id: str,
    level: str,
    module: str,
    message: str,
    metadata: dict[str, Any] | None = None,
    received_at: dt.datetime | None = None,
) -> int:
    """Store one entry and return its ID."""
    with batch_transaction(db) as transaction:
        return add_log_entry_in(
            transaction,
            project_id=project_id,
            device_id=device_id,
            level=level,
            module=module,
            message=message,
            metadata=metadata,
            received_at=received_at,
        )


def add_log_entry_in(
    transaction: BatchTransaction,
    *,
    project_id: str,
    device_id: str,
    level: str,
    module: str,
    message: str,
    metadata: dict[str, Any] | None = None,
    received_at: dt.datetime | None = None,
) -> int:
    """Store one entry in a batch and return its ID.

    Raises NotFound when the device does not exist (any more).
    """
    transaction.lock_device(device_id, project_id)
    row = transaction.fetch_one(
        _INSERT_ENTRY,
        {
            "project_id": project_id,
            "device_id": device_id,
            "received_at": received_at or utcnow(),
            "level": level[:MAX_LEVEL_LENGTH],
            "module": module[:MAX_MODULE_LENGTH],
            "message": message,
            "metadata": dict(metadata or {}),
        },
    )
    assert row is not None
    return int(row[0])


_INSERT_ENTRY = prepared_insert(
    DeviceLog,
    (
        "project_id",
        "device_id",
        "received_at",
        "level",
        "module",
        "message",
        "metadata",
    ),
)


def list_log_entries(
    db: Database,
    project_id: str,
    device_id: str,
    *,
    window: TimeRange = ALL_TIME,
    page: int = 0,
    per_page: int = 100,
) -> TimelinePage[LogEntry]:
    """Return one page of a device's log entries, newest first."""
    return query_page(
        db,
        DeviceLog,
        LogEntry.from_row,
        project_id=project_id,
        device_id=device_id,
        window=window,
        page=page,
        per_page=per_page,
    )
