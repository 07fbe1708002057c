"""Per-device token buckets that shed a flood without refusing it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fleetgate.gateway.ratelimit import DeviceRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def limiter(clock: FakeClock, **options: float) -> DeviceRateLimiter:
    settings = {"rate": 20.0, "burst": 50, "warn_interval": 60.0}
    settings.update(options)
    return DeviceRateLimiter(
        "logs",
        rate=settings["rate"],
        burst=int(settings["burst"]),
        warn_interval=settings["warn_interval"],
        max_devices=int(settings.get("max_devices", 10_000)),
        clock=clock,
    )


class TestDeviceRateLimiter:
    def test_burst_then_drops(self, clock: FakeClock) -> None:
        buckets = limiter(clock)
        allowed = [buckets.allow("dev-1") for _ in range(60)]
        assert allowed.count(True) == 50
        assert allowed[50:] == [False] * 10

    def test_refills_at_rate(self, clock: FakeClock) -> None:
        buckets = limiter(clock)
        for _ in range(50):
            buckets.allow("dev-1")
        clock.now += 0.5
        allowed = [buckets.allow("dev-1") for _ in range(15)]
        assert allowed.count(True) == 10

    def test_devices_have_own_buckets(self, clock: FakeClock) -> None:
        buckets = limiter(clock, burst=1)
        assert buckets.allow("dev-1")
        assert not buckets.allow("dev-1")
        assert buckets.allow("dev-2")

    def test_one_warning_per_interval_counts_drops(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        buckets = limiter(clock, burst=1, rate=0.001)
        with caplog.at_level(logging.WARNING, "fleetgate.gateway.ratelimit"):
            for _ in range(100):
                buckets.allow("dev-1", project_id="acme")
            clock.now += 61
            buckets.allow("dev-1", project_id="acme")

        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 2
        assert "dropped=1 " in warnings[0]
        assert "dropped=99 " in warnings[1]
        assert "device=dev-1" in warnings[1]
        assert "project=acme" in warnings[1]

    def test_table_is_bounded(self, clock: FakeClock) -> None:
        buckets = limiter(clock, burst=1, max_devices=2)
        for name in ("a", "b", "c"):
            assert buckets.allow(name)
        # "a" was evicted, so it starts again with a full bucket.
        assert buckets.allow("a")
        assert not buckets.allow("c")

    def test_quiet_device_count_is_reported_by_timer(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        buckets = limiter(clock, burst=1, rate=0.001, warn_interval=0.05)

        async def flood_then_stop() -> None:
            for _ in range(10):
                buckets.allow("dev-1", project_id="acme")
            clock.now += 0.05
            await asyncio.sleep(0.3)

        with caplog.at_level(logging.WARNING, "fleetgate.gateway.ratelimit"):
            asyncio.run(asyncio.wait_for(flood_then_stop(), 5.0))

        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 2
        assert "dropped=1 " in warnings[0]
        assert "dropped=8 " in warnings[1]

    def test_evicted_bucket_reports_its_count(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        buckets = limiter(clock, burst=1, rate=0.001, max_devices=1)
        with caplog.at_level(logging.WARNING, "fleetgate.gateway.ratelimit"):
            for _ in range(4):
                buckets.allow("a")
            buckets.allow("b")

        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 2
        assert "device=a dropped=2 " in warnings[1]

    def test_retry_after_is_seconds_to_next_token(self, clock: FakeClock) -> None:
        buckets = limiter(clock, burst=1, rate=0.25)
        buckets.allow("dev-1")
        clock.now += 1
        assert buckets.retry_after("dev-1") == 3
        assert buckets.retry_after("unseen") == 0

    def test_rejects_bad_settings(self) -> None:
        with pytest.raises(ValueError, match="rate must be positive"):
            DeviceRateLimiter("logs", rate=0, burst=1)
