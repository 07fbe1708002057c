"""The gateway's side of the connection log: a bounded buffer and its writer.

Handshakes run on the event loop, so recording an event only appends it
to an in-memory buffer. A background task writes the buffer in batches
(see :func:`fleetgate.store.connections.write_events`), prunes the table
by age and count, and writes what is left when the gateway stops.

Bounds, so that a flood of handshakes cannot exhaust memory or the
table:

- the buffer contains at most ``buffer_size`` events; further events are
  dropped, counted in ``fleetgate_connection_log_dropped_total``, and
  logged at most once a minute with the count;
- a refusal without an existing project (no subject, or an ``O`` naming
  no project) gets no row, because it belongs to no tenant and would let
  anyone fill the table. Neither does a project's refusal beyond
  ``max_rejections_per_minute``. Both are counted per reason in
  ``fleetgate_connection_log_unrecorded_total`` and summed in one INFO
  line per minute. Each refusal still gets its own WARNING line from the
  code that refused it.

While the database is unreachable, a batch that fails goes back to the
front of the buffer when it fits, and is dropped and counted otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable

from fleetgate import metrics
from fleetgate.config import ConnectionLogSettings
from fleetgate.errors import StoreUnavailable
from fleetgate.store import connections
from fleetgate.store.connections import NewConnectionEvent
from fleetgate.store.database import Database

log = logging.getLogger(__name__)

# Seconds between two lines about dropped or unrecorded events.
SUMMARY_INTERVAL = 60.0
# Time the final flush may take when the gateway stops.
STOP_TIMEOUT = 10.0
# Projects whose refusals are counted per minute at once; beyond this the
# counts start over, which only lets a few more rows through.
MAX_TRACKED_PROJECTS = 10_000


class ConnectionLog:
    """Buffers connection events and writes them in batches from a task."""

    def __init__(
        self,
        db: Database,
        settings: ConnectionLogSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.buffer_size < 1 or settings.batch_size < 1:
            raise ValueError(
                "connection log buffer_size and batch_size must be at least 1"
            )
        self.db = db
        self.settings = settings
        self._clock = clock
        self._buffer: collections.deque[NewConnectionEvent] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self.dropped = 0
        self._dropped_unlogged = 0
        self._unrecorded: collections.Counter[str] = collections.Counter()
        self._summary_at = clock()
        self._pruned_at: float | None = None
        # project -> (minute, rejections recorded in it)
        self._rejections: dict[str, tuple[int, int]] = {}

    @property
    def pending(self) -> int:
        """Events waiting to be written."""
        return len(self._buffer)

    def start(self) -> None:
        """Start the writer task on the running loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._write_forever(), name="fleetgate-connection-log"
        )

    async def stop(self) -> None:
        """Stop the writer and write every buffered event, within a time bound."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await asyncio.wait_for(self.flush(), STOP_TIMEOUT)
        except TimeoutError:
            log.error("connection log not flushed within %.0f seconds", STOP_TIMEOUT)
        if self._buffer:
            log.error(
                "connection log events not written at shutdown events=%d",
                len(self._buffer),
            )
            self._drop(len(self._buffer))
            self._buffer.clear()
        self._summarize(force=True)

    def record(self, event: NewConnectionEvent) -> None:
        """Queue ``event`` for writing, or drop and count it when the buffer is full."""
        if len(self._buffer) >= self.settings.buffer_size:
            self._drop(1)
            return
        self._buffer.append(event)
        if len(self._buffer) >= self.settings.batch_size and self._wakeup:
            self._wakeup.set()

    def record_rejection(self, event: NewConnectionEvent) -> None:
        """Queue a rejected handshake unless its project is over its limit."""
        minute = int(self._clock() // 60)
        if len(self._rejections) >= MAX_TRACKED_PROJECTS:
            self._rejections.clear()
        seen_minute, count = self._rejections.get(event.project_id, (minute, 0))
        if seen_minute != minute:
            count = 0
        if count >= self.settings.max_rejections_per_minute:
            self.unrecorded(event.reason or "-")
            return
        self._rejections[event.project_id] = (minute, count + 1)
        self.record(event)

    def unrecorded(self, reason: str) -> None:
        """Count a refusal that gets no row, for the metrics and the summary line."""
        self._unrecorded[reason] += 1
        metrics.CONNECTION_LOG_UNRECORDED.labels(reason=reason).inc()

    async def flush(self) -> None:
        """Write every buffered event, batch by batch."""
        while self._buffer:
            size = min(self.settings.batch_size, len(self._buffer))
            batch = [self._buffer.popleft() for _ in range(size)]
            try:
                await asyncio.to_thread(connections.write_events, self.db, batch)
            except StoreUnavailable:
                # The database's outage monitor logs the outage.
                self._requeue(batch)
                return
            except Exception:
                log.exception(
                    "cannot write connection log events=%d; they are lost", size
                )
                self._drop(size)

    async def prune(self) -> int:
        """Delete events beyond the configured age and count."""
        deleted = await asyncio.to_thread(
            connections.prune_events,
            self.db,
            older_than=dt.datetime.now(dt.UTC) - self.settings.retention,
            max_per_project=self.settings.max_events_per_project,
        )
        if deleted:
            log.info("connection log pruned events=%d", deleted)
        return deleted

    async def _write_forever(self) -> None:
        assert self._wakeup is not None
        interval = self.settings.flush_interval.total_seconds()
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), interval)
            self._wakeup.clear()
            await self.flush()
            await self._prune_when_due()
            self._summarize()

    async def _prune_when_due(self) -> None:
        now = self._clock()
        due = self.settings.prune_interval.total_seconds()
        if self._pruned_at is not None and now - self._pruned_at < due:
            return
        self._pruned_at = now
        try:
            await self.prune()
        except StoreUnavailable:
            pass  # logged by the outage monitor; retried at the next interval
        except Exception:
            log.exception("cannot prune the connection log")

    def _requeue(self, batch: list[NewConnectionEvent]) -> None:
        room = self.settings.buffer_size - len(self._buffer)
        kept = batch[:room] if room > 0 else []
        self._buffer.extendleft(reversed(kept))
        if len(kept) < len(batch):
            self._drop(len(batch) - len(kept))

    def _drop(self, count: int) -> None:
        first = self.dropped == 0
        self.dropped += count
        self._dropped_unlogged += count
        metrics.CONNECTION_LOG_DROPPED.inc(count)
        if first:
            log.warning(
                "connection log buffer full, events dropped buffer_size=%d dropped=%d",
                self.settings.buffer_size,
                count,
            )
            self._dropped_unlogged = 0

    def _summarize(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._summary_at < SUMMARY_INTERVAL:
            return
        seconds = now - self._summary_at
        self._summary_at = now
        if self._dropped_unlogged:
            log.warning(
                "connection log events dropped seconds=%.0f dropped=%d total=%d",
                seconds,
                self._dropped_unlogged,
                self.dropped,
            )
            self._dropped_unlogged = 0
        if self._unrecorded:
            counted = sorted(self._unrecorded.items())
            counts = " ".join(f"{reason}={count}" for reason, count in counted)
            log.info(
                "handshake refusals counted, not in the connection log seconds=%.0f %s",
                seconds,
                counts,
            )
            self._unrecorded.clear()
