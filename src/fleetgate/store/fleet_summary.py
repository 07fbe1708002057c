"""Figures about a project's fleet as a whole, for the web console.

Device certificate expiries come from the expiry of the certificate that
each device last connected with (``Device.last_certificate_not_after``).
A device that never connected has none, and a certificate issued but not
yet used is not counted until its device connects with it.
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


@dataclasses.dataclass(frozen=True)
class WeekOfExpiries:
    """The device certificates that expire in one week."""

    starts: dt.datetime
    count: int


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


def weekly_expiries(
    db: Database, project_id: str, *, now: dt.datetime, weeks: int = 52
) -> tuple[int, list[WeekOfExpiries]]:
    """Count device certificates by the week they expire in.

    Returns the number already expired at ``now``, and one entry per
    week for ``weeks`` weeks from ``now``, empty weeks included.
    """
    if weeks < 1:
        raise ValueError(f"cannot count expiries over {weeks} weeks: need 1 or more")
    end = now + dt.timedelta(weeks=weeks)
    with db.session(read_only=True) as session:
        require_project(session, project_id)
        expired = session.scalar(
            select(func.count()).where(
                Device.project_id == project_id,
                Device.last_certificate_not_after < now,
            )
        )
        expiries = session.scalars(
            select(Device.last_certificate_not_after).where(
                Device.project_id == project_id,
                Device.last_certificate_not_after >= now,
                Device.last_certificate_not_after < end,
            )
        ).all()

    counts = [0] * weeks
    for not_after in expiries:
        if not_after is not None:
            counts[(not_after - now) // dt.timedelta(weeks=1)] += 1
    series = [
        WeekOfExpiries(starts=now + dt.timedelta(weeks=index), count=count)
        for index, count in enumerate(counts)
    ]
    return expired or 0, series
