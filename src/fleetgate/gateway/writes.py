"""The gateway's device writes, applied in batches by one thread.

Each write that a device sends (a LightDB State change, a stream
record, a log entry) is queued to the process's :class:`DeviceWriter`.
Its thread takes everything queued, up to ``max_batch`` writes, and
applies it in one transaction (:mod:`fleetgate.store.batch`): group
commit. Each write runs inside its own savepoint, so a write that fails
(invalid input, a device deleted meanwhile) is rolled back and its
request gets its own error, while the rest of the batch commits. The results
reach the waiting coroutines with one ``call_soon_threadsafe`` per
batch.

One writer per process means one SQLite writer per process, instead of
several worker threads taking turns at the write lock, and one commit
for many writes. Under ``fleetgate serve --workers N`` each worker
process has its own writer, and the writers take the database's usual
locks (see :mod:`fleetgate.store.batch`).

The queue is bounded. When ``max_queued`` writes wait, a further write
raises WriteQueueFull, which a device gets as 5.03 Service Unavailable
with Max-Age, and one WARNING a minute counts such refusals. When the
gateway stops, the writer applies every queued write before its thread
ends, and refuses new ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fleetgate.errors import StoreUnavailable, WriteQueueFull
from fleetgate.store.batch import BatchTransaction, batch_transaction
from fleetgate.store.database import Database

log = logging.getLogger(__name__)

T = TypeVar("T")

# Max writes waiting. An estimate: small state writes in batches take
# some 50-100 us each on SQLite, so a full queue is well under a second
# of work, and a device that finds it full had better retry later.
MAX_QUEUED_WRITES = 2000
# Max writes in one transaction, which bounds how long a batch holds
# the write lock and the device rows.
MAX_BATCH_WRITES = 200
# Max-Age of the 5.03 for a write refused because the queue is full.
# An estimate of how long a full queue takes to drain, not a measurement.
QUEUE_FULL_RETRY_SECONDS = 5
# How long stop() waits for the queued writes to be applied.
STOP_TIMEOUT = 30.0
# Seconds between two WARNING lines about writes refused for a full queue.
REFUSAL_LOG_INTERVAL = 60.0


class WriterState(enum.Enum):
    """Lifecycle of a :class:`DeviceWriter`."""

    CREATED = "created"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclasses.dataclass
class _QueuedWrite:
    device_id: str
    write: Callable[[BatchTransaction], Any]
    future: asyncio.Future[Any]


# The future of a write, and its result or the error it raised.
_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]

# Queued by stop() after the last write, so the thread ends once it is
# applied.
_STOP = object()


class DeviceWriter:
    """Applies the device writes of one process from one thread, a batch at a time."""

    def __init__(
        self,
        db: Database,
        *,
        max_queued: int = MAX_QUEUED_WRITES,
        max_batch: int = MAX_BATCH_WRITES,
    ) -> None:
        if max_queued < 1 or max_batch < 1:
            raise ValueError("max_queued and max_batch must be at least 1")
        self.db = db
        self.max_queued = max_queued
        self.max_batch = max_batch
        self.state = WriterState.CREATED
        # A C queue: a put costs less than a Condition's notify, and only
        # the event loop thread puts, so nothing follows _STOP.
        self._queue: queue.SimpleQueue[_QueuedWrite | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.refused = 0
        self._refused_unlogged = 0
        self._refusal_logged_at: float | None = None

    @property
    def pending(self) -> int:
        """Writes queued and not yet taken into a batch."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the writer thread, which sends results to the running loop."""
        if self.state is not WriterState.CREATED:
            raise RuntimeError(
                f"cannot start a device writer that is {self.state.value}"
            )
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._write_forever, name="fleetgate-device-writer", daemon=True
        )
        self.state = WriterState.RUNNING
        self._thread.start()

    async def apply(self, device_id: str, write: Callable[[BatchTransaction], T]) -> T:
        """Queue ``write`` for the device and return its result once committed.

        ``write`` runs in the writer thread inside a savepoint of the
        batch, and its error, if any, is raised here. Raises
        WriteQueueFull when the queue is full, and StoreUnavailable when
        the writer is not running.
        """
        if self.state is not WriterState.RUNNING or self._loop is None:
            raise StoreUnavailable(
                f"cannot store the write of device {device_id!r}: the gateway "
                f"is {self.state.value}"
            )
        if self._queue.qsize() >= self.max_queued:
            self._count_refusal()
            raise WriteQueueFull(
                f"cannot store the write of device {device_id!r}: "
                f"{self.max_queued} device writes are queued, the maximum",
                retry_after=QUEUE_FULL_RETRY_SECONDS,
            )
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_QueuedWrite(device_id, write, future))
        return await future

    async def stop(self) -> None:
        """Apply every queued write and end the thread; later writes raise."""
        if self.state is not WriterState.RUNNING:
            self.state = WriterState.STOPPED
            return
        self.state = WriterState.STOPPING
        self._queue.put(_STOP)
        thread = self._thread
        assert thread is not None
        await asyncio.to_thread(thread.join, STOP_TIMEOUT)
        if thread.is_alive():
            log.error(
                "device writer still busy after %.0f seconds writes_queued=%d; "
                "their responses wait for the database",
                STOP_TIMEOUT,
                self._queue.qsize(),
            )
        self.state = WriterState.STOPPED
        # Let the results of the last batch reach their coroutines.
        await asyncio.sleep(0)
        self._log_refusals(force=True)

    def _write_forever(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_QueuedWrite] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                    break
                assert isinstance(item, _QueuedWrite)
                batch.append(item)
                if len(batch) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._deliver(self._apply_batch(batch))

    def _apply_batch(self, batch: list[_QueuedWrite]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        try:
            with batch_transaction(self.db) as transaction:
                transaction.lock_devices(queued.device_id for queued in batch)
                for queued in batch:
                    outcomes.append(_apply_one(transaction, queued))
        except StoreUnavailable as exc:
            # The database's outage monitor logs the outage.
            return [(queued.future, None, exc) for queued in batch]
        except Exception as exc:
            log.exception("device write batch failed writes=%d", len(batch))
            return [(queued.future, None, exc) for queued in batch]
        return outcomes

    def _deliver(self, outcomes: list[_Outcome]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(_settle, outcomes)
        except RuntimeError:
            # The loop is closed, so no coroutine waits for these results.
            log.error(
                "device write results undelivered, the event loop is closed writes=%d",
                len(outcomes),
            )

    def _count_refusal(self) -> None:
        self.refused += 1
        self._refused_unlogged += 1
        self._log_refusals()

    def _log_refusals(self, *, force: bool = False) -> None:
        now = time.monotonic()
        due = (
            self._refusal_logged_at is None
            or now - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL
        )
        if not self._refused_unlogged or not (due or force):
            return
        log.warning(
            "device writes rejected: the write queue is full reason=%s "
            "max_queued=%d refused=%d total=%d",
            WriteQueueFull.reason,
            self.max_queued,
            self._refused_unlogged,
            self.refused,
        )
        self._refusal_logged_at = now
        self._refused_unlogged = 0


def _apply_one(transaction: BatchTransaction, queued: _QueuedWrite) -> _Outcome:
    transaction.begin_write()
    try:
        result = queued.write(transaction)
    except Exception as exc:
        # A failed rollback escapes and fails the whole batch, because
        # the transaction cannot go on.
        transaction.undo_write()
        return queued.future, None, exc
    transaction.end_write()
    return queued.future, result, None


def _settle(outcomes: list[_Outcome]) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue  # the request was cancelled, but its write is kept
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
