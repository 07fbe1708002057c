"""Per-device token buckets, for traffic that is shed rather than refused.

A device that floods a resource such as its log gets its requests
dropped beyond a steady rate and a burst, while the caller still
responds with success, because Golioth's firmware SDK reports a failed log
post as a new warning, which it posts to the log again, so an error
response would feed the flood. Each device has its own bucket, and the
table of buckets is bounded: past ``max_devices`` the least recently
seen device's bucket is dropped, and that device starts again with a
full bucket.

Drops are counted, and at most one WARNING per device and
``warn_interval`` seconds reports how many were dropped since the last
one. The warning is written at the first request (kept or dropped)
after the interval, so the count of a flood's last interval appears
only when the device sends again.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclasses.dataclass
class _Bucket:
    tokens: float
    updated: float
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
        self._clock = clock
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()

    def allow(self, device_id: str, *, project_id: str = "-") -> bool:
        """Take one token of ``device_id``'s bucket; False when it is empty."""
        now = self._clock()
        bucket = self._bucket(device_id, now)
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
            log.warning(
                "requests dropped over the rate limit resource=%s project=%s "
                "device=%s dropped=%d rate=%g burst=%d",
                self.name,
                project_id,
                device_id,
                bucket.dropped,
                self.rate,
                self.burst,
            )
            bucket.dropped = 0
            bucket.warned = now
        return allowed

    def _bucket(self, device_id: str, now: float) -> _Bucket:
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[device_id] = bucket
            while len(self._buckets) > self.max_devices:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(device_id)
        return bucket
