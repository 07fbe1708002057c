"""LightDB Stream on ``POST .s`` and ``POST .s/<path>``.

Golioth's firmware SDK (``src/stream.c``) posts stream values under the
``.s/`` prefix, as JSON (Content-Format 50) or CBOR (60), and larger
ones block-wise. Each post is stored as one record with the path below
``.s`` and the time of receipt, and answered 2.04 Changed. Posts to
``.s/logs`` are device logs, handed to the log service.

A device posting faster than its rate limit
(:class:`~fleetgate.config.DeviceRateLimits`, 20 values per second with
bursts of 50 by default) gets 4.29 Too Many Requests with Max-Age, the
seconds until it may post again, and the value is not stored. The SDK
takes the 4.29 as a failed post, so the device learns that the value
is lost.
"""

from __future__ import annotations

import functools
import json

from aiocoap.numbers.codes import Code

from fleetgate.config import DEFAULT_RATE_LIMITS, DeviceRateLimits
from fleetgate.errors import InvalidInput, RateLimited
from fleetgate.gateway.ratelimit import DeviceRateLimiter
from fleetgate.gateway.resources import (
    CoapRequest,
    CoapResponse,
    Handler,
    decode_body,
)
from fleetgate.gateway.writes import DeviceWriter
from fleetgate.store import stream as stream_store

PREFIX = ".s"
LOGS_PATH = (".s", "logs")
# Bounded by what block-wise reassembly accepts in one request.
MAX_RECORD_BYTES = 64 * 1024


class StreamService:
    """Stores LightDB Stream records and passes ``.s/logs`` to the log service."""

    def __init__(
        self,
        writer: DeviceWriter,
        *,
        logs: Handler,
        limits: DeviceRateLimits = DEFAULT_RATE_LIMITS,
    ) -> None:
        self._writer = writer
        self._logs = logs
        self.limiter = DeviceRateLimiter.per_second(
            "stream", limits.stream_rate, limits.stream_burst, limits
        )

    async def handle(self, request: CoapRequest) -> CoapResponse:
        """Store the posted value at ``.s/<path>`` with the time of receipt."""
        if request.path == LOGS_PATH:
            return await self._logs(request)
        if request.method is not Code.POST:
            return CoapResponse.diagnostic(
                Code.METHOD_NOT_ALLOWED,
                f"{request.method.name} is not allowed on .s, use POST",
            )
        if len(request.payload) > MAX_RECORD_BYTES:
            return CoapResponse.diagnostic(
                Code.REQUEST_ENTITY_TOO_LARGE,
                f"stream value of {len(request.payload)} bytes exceeds "
                f"the maximum of {MAX_RECORD_BYTES}",
            )
        path = request.path[1:]
        if any(not step for step in path):
            raise InvalidInput(
                f"cannot store stream record at /{'/'.join(request.path)}: "
                "every path step must be non-empty"
            )

        value = decode_body(request.payload, request.content_format)
        try:
            # JSON has no NaN or infinity, and PostgreSQL rejects them.
            json.dumps(value, allow_nan=False)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput(
                f"cannot store stream record: the value is not storable JSON ({exc})"
            ) from exc

        device = request.device
        if not self.limiter.allow(device.device_id, project_id=device.project_id):
            raise RateLimited(
                f"cannot store stream record: over the limit of "
                f"{self.limiter.rate:g} values per second",
                retry_after=self.limiter.retry_after(device.device_id),
            )
        await self._writer.apply(
            device.device_id,
            functools.partial(
                stream_store.add_stream_record_in,
                project_id=device.project_id,
                device_id=device.device_id,
                path=path,
                value=value,
            ),
        )
        return CoapResponse(Code.CHANGED)
