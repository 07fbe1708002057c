"""Store reads on the device path, run where they cost the least.

A read handed to a worker thread costs a thread wake-up and a GIL
hand-off, which on a small SQLite point read costs more CPU than the
read itself. SQLite in WAL mode lets readers proceed while a writer
commits, so :func:`read` runs SQLite reads on the event loop, on a
connection of the event loop's own (:meth:`Database.claim_read_connection`)
instead of one checked out of the pool per read. PostgreSQL reads wait
for a network round trip, so they run in a worker thread.
Writes always run in a worker thread, because a SQLite writer may wait
for the write lock.

NOTE: a SQLite read still waits up to the busy timeout when the file
is locked exclusively (a WAL recovery after a crash), and it stalls the
event loop while it waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from fleetgate.store.database import Database

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def read(
    db: Database, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
) -> _T:
    """Run the read-only store call ``function``, inline on SQLite."""
    if db.dialect == "sqlite":
        db.claim_read_connection()
        return function(*args, **kwargs)
    return await asyncio.to_thread(function, *args, **kwargs)
