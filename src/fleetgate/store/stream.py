"""LightDB Stream: time series of JSON values that devices post.

Each post to ``.s`` or ``.s/<path>`` is one record: the path below
``.s`` (empty for ``.s`` itself), the value and the time of receipt.
Records are never changed after they are written; they go when their
device is deleted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from fleetgate.errors import InvalidInput
from fleetgate.store.batch import BatchTransaction, batch_transaction, prepared_insert
from fleetgate.store.database import Database
from fleetgate.store.models import StreamRecord, utcnow
from fleetgate.store.timeline import ALL_TIME, TimelinePage, TimeRange, query_page

MAX_PATH_LENGTH = 512


@dataclasses.dataclass(frozen=True)
class StreamEntry:
    """A LightDB Stream record as stored."""

    id: int
    project_id: str
    device_id: str
    received_at: dt.datetime
    path: tuple[str, ...]
    value: Any

    @classmethod
    def from_row(cls, row: StreamRecord) -> StreamEntry:
        """Copy a stream row into a record that outlives its session."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            device_id=row.device_id,
            received_at=row.received_at,
            path=tuple(row.path.split("/")) if row.path else (),
            value=row.value,
        )

    def nested(self) -> Any:
        """Return the value wrapped in one object per path step."""
        value = self.value
        for key in reversed(self.path):
            value = {key: value}
        return value


def add_stream_record(
    db: Database,
    *,
    project_id: str,
    device_id: str,
    path: Sequence[str],
    value: Any,
    received_at: dt.datetime | None = None,
) -> int:
    """Store one record and return its ID."""
    with batch_transaction(db) as transaction:
        return add_stream_record_in(
            transaction,
            project_id=project_id,
            device_id=device_id,
            path=path,
            value=value,
            received_at=received_at,
        )


def add_stream_record_in(
    transaction: BatchTransaction,
    *,
    project_id: str,
    device_id: str,
    path: Sequence[str],
    value: Any,
    received_at: dt.datetime | None = None,
) -> int:
    """Store one record in a batch and return its ID.

    Raises NotFound when the device does not exist (any more).
    """
    rendered = "/".join(path)
    if len(rendered) > MAX_PATH_LENGTH:
        raise InvalidInput(
            f"cannot store stream record at {rendered[:40]}...: the path has "
            f"{len(rendered)} characters and the maximum is {MAX_PATH_LENGTH}"
        )
    transaction.lock_device(device_id, project_id)
    row = transaction.fetch_one(
        _INSERT_RECORD,
        {
            "project_id": project_id,
            "device_id": device_id,
            "received_at": received_at or utcnow(),
            "path": rendered,
            "value": value,
        },
    )
    assert row is not None
    return int(row[0])


_INSERT_RECORD = prepared_insert(
    StreamRecord,
    ("project_id", "device_id", "received_at", "path", "value"),
)


def list_stream_records(
    db: Database,
    project_id: str,
    device_id: str,
    *,
    window: TimeRange = ALL_TIME,
    page: int = 0,
    per_page: int = 100,
) -> TimelinePage[StreamEntry]:
    """Return one page of a device's stream records, newest first."""
    return query_page(
        db,
        StreamRecord,
        StreamEntry.from_row,
        project_id=project_id,
        device_id=device_id,
        window=window,
        page=page,
        per_page=per_page,
    )
