"""Device settings on ``.c`` and the device's report on ``.c/status``.

Golioth's firmware SDK (``src/settings.c``) observes ``.c`` with Accept
CBOR and also reads it with a plain GET each time the application
registers a setting. It expects a CBOR map with ``version``, an integer
that it copies into its report, and ``settings``, a map from key to an
integer, float, boolean or string. After applying them it posts a CBOR
map to ``.c/status`` with that ``version`` and, only when some failed,
``errors``: a list of maps with ``setting_key`` and ``error_code``.

The response here is the device's effective settings, the project's
with the device's overrides on top, and an observer is notified each
time either changes in this process. A status report is logged and
stored as a device log entry of module ``settings`` (level ``warn``
when it lists errors), and the response is 2.04 Changed.

Status reports beyond the device's rate limit
(:class:`~fleetgate.config.DeviceRateLimits`, 1 per second with bursts
of 20 by default) also get 2.04, because the SDK logs a failed report
as a warning that it posts to the device log, but they are not stored,
only counted in a WARNING.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from aiocoap.numbers.codes import Code

from fleetgate.config import DEFAULT_RATE_LIMITS, DeviceRateLimits
from fleetgate.errors import InvalidInput
from fleetgate.gateway.ratelimit import DeviceRateLimiter
from fleetgate.gateway.resources import (
    CoapRequest,
    CoapResponse,
    decode_body,
    encode_body,
)
from fleetgate.gateway.writes import DeviceWriter
from fleetgate.store import device_logs
from fleetgate.store import settings as settings_store
from fleetgate.store.database import Database

log = logging.getLogger(__name__)

PREFIX = ".c"
# The SDK encodes its report in a 256-byte buffer, so this leaves room
# for other clients' longer reports.
MAX_STATUS_BYTES = 4096


class SettingsService:
    """Serves a device's settings and stores its status reports."""

    def __init__(
        self,
        db: Database,
        writer: DeviceWriter,
        *,
        limits: DeviceRateLimits = DEFAULT_RATE_LIMITS,
    ) -> None:
        self._db = db
        self._writer = writer
        self.limiter = DeviceRateLimiter.per_second(
            ".c/status", limits.status_rate, limits.status_burst, limits
        )

    async def handle(self, request: CoapRequest) -> CoapResponse:
        """Serve ``GET .c`` and ``POST .c/status``."""
        # The SDK builds the path from ".c/" and an empty name, so a
        # trailing empty Uri-Path segment may arrive.
        steps = tuple(step for step in request.path[1:] if step)
        if not steps:
            if request.method is not Code.GET:
                return CoapResponse.diagnostic(
                    Code.METHOD_NOT_ALLOWED,
                    f"{request.method.name} is not allowed on .c, use GET",
                )
            return await self._read(request)
        if steps == ("status",):
            if request.method not in (Code.POST, Code.PUT):
                return CoapResponse.diagnostic(
                    Code.METHOD_NOT_ALLOWED,
                    f"{request.method.name} is not allowed on .c/status, use POST",
                )
            return await self._store_status(request)
        return CoapResponse.diagnostic(
            Code.NOT_FOUND, f"no resource at /{'/'.join(request.path)}"
        )

    async def _read(self, request: CoapRequest) -> CoapResponse:
        device = request.device
        record = await asyncio.to_thread(
            settings_store.get_device_settings,
            self._db,
            device.project_id,
            device.device_id,
        )
        body = {"version": record.version, "settings": record.settings}
        payload, content_format = encode_body(body, request.accept)
        return CoapResponse(Code.CONTENT, payload, content_format)

    async def _store_status(self, request: CoapRequest) -> CoapResponse:
        if len(request.payload) > MAX_STATUS_BYTES:
            return CoapResponse.diagnostic(
                Code.REQUEST_ENTITY_TOO_LARGE,
                f"settings status of {len(request.payload)} bytes exceeds "
                f"the maximum of {MAX_STATUS_BYTES}",
            )
        report = decode_body(request.payload, request.content_format)
        if not isinstance(report, dict):
            raise InvalidInput(
                "cannot store settings status: the body must be a map with version"
            )
        errors = report.get("errors") or []
        if not isinstance(errors, list):
            raise InvalidInput("cannot store settings status: errors must be a list")
        version = report.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            # The SDK copies the integer version of the settings it read.
            raise InvalidInput(
                "cannot store settings status: version must be an integer, "
                f"not {version!r:.40}"
            )
        device = request.device
        if not self.limiter.allow(device.device_id, project_id=device.project_id):
            # NOTE: a dropped report is lost, so while a device floods,
            # the newest stored report may be older than its last one.
            return CoapResponse(Code.CHANGED)
        level = "warn" if errors else "info"
        if errors:
            message = f"settings version {version} applied with {len(errors)} errors"
        else:
            message = f"settings version {version} applied"
        log.log(
            logging.WARNING if errors else logging.DEBUG,
            "settings status project=%s device=%s version=%s errors=%d",
            device.project_id,
            device.device_id,
            version,
            len(errors),
        )
        await self._writer.apply(
            device.device_id,
            functools.partial(
                device_logs.add_log_entry_in,
                project_id=device.project_id,
                device_id=device.device_id,
                level=level,
                module="settings",
                message=message,
                metadata=report,
            ),
        )
        return CoapResponse(Code.CHANGED)
