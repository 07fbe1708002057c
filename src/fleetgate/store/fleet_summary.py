"""Device counts of a project as a whole, for the web console.

The console's expiry chart comes from :mod:`fleetgate.forecast`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import func, select

from fleetgate.store.database import Database
from fleetgate.store.models import Device, utcnow
from fleetgate.store.projects import require_project

RECENT_CONNECTION = dt.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class DeviceCounts:
    """How many devices a project has, and how many connect."""

    total: int
    # Seen within RECENT_CONNECTION before the time of the count.
    connected_recently: int
    never_connected: int


def count_devices(
    db: Database, project_id: str, *, now: dt.datetime | None = None
) -> DeviceCounts:
    """Count a project's devices: all, seen in the last hour, never seen."""
    since = (now or utcnow()) - RECENT_CONNECTION
    in_project = Device.project_id == project_id
    with db.session(read_only=True) as session:
        require_project(session, project_id)
        total = session.scalar(select(func.count()).where(in_project))
        recent = session.scalar(
            select(func.count()).where(in_project, Device.last_seen_at >= since)
        )
        never = session.scalar(
            select(func.count()).where(in_project, Device.last_seen_at.is_(None))
        )
    return DeviceCounts(
        total=total or 0, connected_recently=recent or 0, never_connected=never or 0
    )
