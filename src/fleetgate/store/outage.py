"""Logging of database outages: one line when it starts, then a summary.

During an outage every device request and API call fails with
:class:`fleetgate.errors.StoreUnavailable`. Logging each failure would
flood the log with thousands of identical lines, so
:class:`OutageMonitor` logs the first failure at ERROR, then at most one
"still unavailable" line per ``interval`` with the count of failures
since, and one WARNING line when a transaction succeeds again, with the
duration of the outage. Callers that catch StoreUnavailable log it at
DEBUG only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from fleetgate import metrics
from fleetgate.errors import Reason

log = logging.getLogger(__name__)

# Seconds between two "still unavailable" lines of one outage.
DEFAULT_INTERVAL = 30.0


class OutageMonitor:
    """Tracks whether the database is reachable and logs each outage."""

    def __init__(
        self,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._started_at: float | None = None
        self._logged_at = 0.0
        self._failures = 0
        self._unlogged = 0

    @property
    def down(self) -> bool:
        """Whether the last transaction failed because the database is down."""
        return self._started_at is not None

    def failed(self, error: str) -> None:
        """Record one failed transaction and log it when a line is due."""
        metrics.DATABASE_ERRORS.inc()
        now = self._clock()
        with self._lock:
            self._failures += 1
            if self._started_at is None:
                self._started_at = now
                self._logged_at = now
                self._unlogged = 0
                first = True
            elif now - self._logged_at >= self._interval:
                self._logged_at = now
                first = False
            else:
                self._unlogged += 1
                return
            failures, self._unlogged = self._unlogged, 0
            seconds = now - self._started_at

        if first:
            log.error(
                "database unavailable reason=%s error=%s",
                Reason.STORE_UNAVAILABLE,
                error,
            )
        else:
            log.error(
                "database still unavailable reason=%s seconds=%.0f "
                "failures_since_last_line=%d error=%s",
                Reason.STORE_UNAVAILABLE,
                seconds,
                failures,
                error,
            )

    def succeeded(self) -> None:
        """Record one committed transaction and log the end of an outage."""
        # Read without the lock first, because this runs on every
        # transaction and usually no outage is in progress.
        if self._started_at is None:
            return
        now = self._clock()
        with self._lock:
            started_at = self._started_at
            if started_at is None:
                return
            failures = self._failures
            self._started_at = None
            self._failures = 0
            self._unlogged = 0
        log.warning(
            "database available again reason=%s seconds=%.1f failures=%d",
            Reason.STORE_RECOVERED,
            now - started_at,
            failures,
        )
