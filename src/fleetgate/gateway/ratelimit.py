"""Per-device token buckets that bound how often a device writes.

A device that floods a resource such as its log gets its requests
turned away beyond a steady rate and a burst. Each service decides what
response the device gets: the log service still responds with success and
drops the entry, because Golioth's firmware SDK reports a failed log
post as a new warning, which it posts to the log again, so an error
response would feed the flood. Each device has its own bucket, and the
table of buckets is bounded: past ``max_devices`` the least recently
seen device's bucket is dropped, and that device starts again with a
full bucket.

Requests over the limit are counted, and at most one WARNING per device
and ``warn_interval`` seconds reports how many there were since the
last one. The first one of a flood is reported at once. Later ones are
reported at the next request after the interval or, when the device
sends nothing more, by a timer on the running event loop at the end of
the interval, so every count appears within about ``warn_interval``
seconds. A bucket pushed out of the table reports its count first.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable

from fleetgate.config import DeviceRateLimits

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclasses.dataclass
class _Bucket:
    tokens: float
    updated: float
    project_id: str = "-"
    dropped: int = 0
    warned: float = float("-inf")


class DeviceRateLimiter:
    """Token buckets of ``rate`` per second and ``burst`` deep, one per device."""

    def __init__(
        self,
        name: str,
        *,
        rate: float,
        burst: int,
        warn_interval: float = 60.0,
        max_devices: int = 10_000,
        summary: str = "requests over the rate limit",
        clock: Clock = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(
                f"rate must be positive and burst at least 1, not {rate} and {burst}"
            )
        self.name = name
        self.rate = rate
        self.burst = burst
        self.warn_interval = warn_interval
        self.max_devices = max_devices
        # The start of the WARNING that counts requests over the limit.
        self.summary = summary
        self._clock = clock
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()
        # One timer per limiter reports the counts of devices gone quiet.
        self._report_timer: asyncio.TimerHandle | None = None
        self._report_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def per_second(
        cls, name: str, rate: float, burst: int, limits: DeviceRateLimits
    ) -> DeviceRateLimiter:
        """Return a limiter with the warning interval of ``limits``."""
        return cls(
            name,
            rate=rate,
            burst=burst,
            warn_interval=limits.warn_interval.total_seconds(),
        )

    def allow(self, device_id: str, *, project_id: str = "-") -> bool:
        """Take one token of ``device_id``'s bucket; False when it is empty."""
        now = self._clock()
        bucket = self._bucket(device_id, now)
        bucket.project_id = project_id
        bucket.tokens = min(
            self.burst, bucket.tokens + (now - bucket.updated) * self.rate
        )
        bucket.updated = now

        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        else:
            bucket.dropped += 1
        if bucket.dropped and now - bucket.warned >= self.warn_interval:
            self._report(device_id, bucket, now)
        elif bucket.dropped:
            self._schedule_report(bucket.warned + self.warn_interval - now)
        return allowed

    def retry_after(self, device_id: str) -> int:
        """Return the whole seconds until ``device_id``'s bucket has a token."""
        bucket = self._buckets.get(device_id)
        if bucket is None:
            return 0
        elapsed = self._clock() - bucket.updated
        missing = 1.0 - min(self.burst, bucket.tokens + elapsed * self.rate)
        return max(0, math.ceil(missing / self.rate))

    def report_due(self) -> None:
        """Log the counts of every device whose warning interval has passed."""
        self._report_timer = None
        now = self._clock()
        next_due = math.inf
        for device_id, bucket in list(self._buckets.items()):
            if not bucket.dropped:
                continue
            due = bucket.warned + self.warn_interval
            if due <= now:
                self._report(device_id, bucket, now)
            else:
                next_due = min(next_due, due)
        if next_due < math.inf:
            self._schedule_report(next_due - now)

    def _report(self, device_id: str, bucket: _Bucket, now: float) -> None:
        log.warning(
            "%s resource=%s project=%s device=%s dropped=%d rate=%g burst=%d",
            self.summary,
            self.name,
            bucket.project_id,
            device_id,
            bucket.dropped,
            self.rate,
            self.burst,
        )
        bucket.dropped = 0
        bucket.warned = now

    def _schedule_report(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # without a loop, counts wait for the device's next request
        timer = self._report_timer
        if timer is not None and self._report_loop is loop:
            return
        self._report_loop = loop
        self._report_timer = loop.call_later(max(delay, 0.0), self.report_due)

    def _bucket(self, device_id: str, now: float) -> _Bucket:
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[device_id] = bucket
            while len(self._buckets) > self.max_devices:
                evicted_id, evicted = self._buckets.popitem(last=False)
                if evicted.dropped:
                    self._report(evicted_id, evicted, now)
        else:
            self._buckets.move_to_end(device_id)
        return bucket
