"""Logging and counting of device requests that get an error response.

Every request that gets a 4.xx or 5.xx response is counted in
``fleetgate_coap_requests_refused`` by code and reason, and logged with
the project, device, method, path, code, reason and the diagnostic sent
to the device. A 4.04 is logged at DEBUG, because devices routinely
read state or settings that were never written. Other codes are logged
at INFO. A message that gets a Reset because it cannot be processed
(malformed, or a confirmable message that is not a request) is counted
with code ``reset`` and logged at INFO with its reason.

The log lines are rate-limited per device, because a device that
repeats a bad request in a loop would otherwise fill the log: beyond
``per_minute`` lines, refusals are only counted, and one WARNING per
device and minute reports how many were not logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiocoap.numbers.codes import Code

from fleetgate import metrics
from fleetgate.gateway.ratelimit import DeviceRateLimiter
from fleetgate.gateway.resources import CoapRequest, CoapResponse, ConnectedDevice

log = logging.getLogger(__name__)

# The code label of a message that got a Reset instead of a response.
RESET = "reset"
# The reason label of an error response that a resource built itself,
# rather than from a FleetgateError with a reason code.
NO_REASON = "none"
DEFAULT_LINES_PER_MINUTE = 10


class RefusalLog:
    """Logs and counts the device requests that get an error response."""

    def __init__(
        self,
        *,
        per_minute: int = DEFAULT_LINES_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lines = DeviceRateLimiter(
            "refused requests",
            rate=per_minute / 60.0,
            burst=per_minute,
            summary="refused requests not logged",
            clock=clock,
        )

    def record(
        self, request: CoapRequest, response: CoapResponse, reason: str = NO_REASON
    ) -> None:
        """Count ``response``, an error, and log it unless over the device's limit."""
        code = response.code
        metrics.COAP_REQUESTS_REFUSED.labels(code=code.dotted, reason=reason).inc()
        device = request.device
        if not self._lines.allow(device.device_id, project_id=device.project_id):
            return
        log.log(
            logging.DEBUG if code is Code.NOT_FOUND else logging.INFO,
            "device request refused project=%s device=%s method=%s path=%r "
            "code=%s reason=%s message=%r",
            device.project_id,
            device.device_id,
            request.method.name,
            "/" + "/".join(request.path),
            code.dotted,
            reason,
            response.payload.decode("utf-8", "replace")[:200],
        )

    def record_reset(
        self, device: ConnectedDevice | None, peer: str, reason: str, detail: str
    ) -> None:
        """Count a message reset as unprocessable, and log it unless over the limit.

        Before the association ``device`` is None and the peer's address
        keys the rate limit.
        """
        metrics.COAP_REQUESTS_REFUSED.labels(code=RESET, reason=reason).inc()
        key = peer if device is None else device.device_id
        project_id = "-" if device is None else device.project_id
        if not self._lines.allow(key, project_id=project_id):
            return
        log.info(
            "device message reset project=%s device=%s peer=%s reason=%s detail=%s",
            project_id,
            "-" if device is None else device.device_id,
            peer,
            reason,
            detail,
        )
