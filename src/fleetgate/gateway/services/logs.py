"""Device logs on ``POST logs`` and ``POST .s/logs``.

Golioth's firmware SDK (``src/log.c``, 2022-2024) encodes each entry as
a CBOR map of ``level`` (``error``, ``warn``, ``info`` or ``debug``),
``module`` and ``msg``, and posts it with Content-Format 60 to
``logs``. ``.s/logs``, under the stream prefix, is served the same way
for clients that post there. JSON maps (50, or no
Content-Format) work the same way, ``message`` is taken for ``msg``, and
a text/plain body (0) is the message of an ``info`` entry. Attributes
other than these, a device-side ``time`` or ``timestamp`` included, are
kept as the entry's metadata; the stored time is the time of receipt.

``module`` and ``msg`` must be text. ``level`` is one of the names of the
SDK's ``enum golioth_log_level`` (``none``, ``error``, ``warn``,
``info``, ``debug``, in any case, and ``warning`` for ``warn``) or its
number from 0 to 4, and defaults to ``info``.

A stored entry gets 2.04 Changed. The SDK treats anything but a
2.xx as a failure and reports it by logging a warning, which it posts
here again, so a flooding device is never answered with an error: past
its rate limit (:class:`~fleetgate.config.DeviceRateLimits`, 20 entries
per second with bursts of 50 by default) entries get 2.04 and are
dropped, and the drops are counted in a WARNING. A
malformed body gets 4.00, which the SDK never sends.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aiocoap.numbers.codes import Code

from fleetgate.config import DEFAULT_RATE_LIMITS, DeviceRateLimits
from fleetgate.errors import InvalidInput
from fleetgate.gateway.ratelimit import DeviceRateLimiter
from fleetgate.gateway.resources import (
    TEXT_PLAIN,
    CoapRequest,
    CoapResponse,
    decode_body,
)
from fleetgate.gateway.writes import DeviceWriter
from fleetgate.store import device_logs

log = logging.getLogger(__name__)

PATHS = (("logs",), (".s", "logs"))
# A log entry travels in one CoAP message or a few blocks of one.
MAX_ENTRY_BYTES = 16 * 1024
# The SDK's enum golioth_log_level, in order, so an index is its number.
LEVELS = ("none", "error", "warn", "info", "debug")


class LogService:
    """Stores the log entries that devices post."""

    def __init__(
        self,
        writer: DeviceWriter,
        *,
        limits: DeviceRateLimits = DEFAULT_RATE_LIMITS,
    ) -> None:
        self._writer = writer
        self.limiter = DeviceRateLimiter.per_second(
            "logs", limits.log_rate, limits.log_burst, limits
        )

    async def handle(self, request: CoapRequest) -> CoapResponse:
        """Store one posted log entry, or drop it over the rate limit."""
        if request.path not in PATHS:
            return CoapResponse.diagnostic(
                Code.NOT_FOUND, f"no resource at /{'/'.join(request.path)}"
            )
        if request.method is not Code.POST:
            return CoapResponse.diagnostic(
                Code.METHOD_NOT_ALLOWED,
                f"{request.method.name} is not allowed on logs, use POST",
            )
        if len(request.payload) > MAX_ENTRY_BYTES:
            return CoapResponse.diagnostic(
                Code.REQUEST_ENTITY_TOO_LARGE,
                f"log entry of {len(request.payload)} bytes exceeds "
                f"the maximum of {MAX_ENTRY_BYTES}",
            )

        entry = parse_entry(request.payload, request.content_format)
        device = request.device
        if not self.limiter.allow(device.device_id, project_id=device.project_id):
            return CoapResponse(Code.CHANGED)

        await self._writer.apply(
            device.device_id,
            functools.partial(
                device_logs.add_log_entry_in,
                project_id=device.project_id,
                device_id=device.device_id,
                **entry,
            ),
        )
        return CoapResponse(Code.CHANGED)


def parse_entry(payload: bytes, content_format: int | None) -> dict[str, Any]:
    """Return the ``level``, ``module``, ``message`` and ``metadata`` of a body."""
    if content_format == TEXT_PLAIN:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("cannot store log entry: text is not UTF-8") from exc
        return {"level": "info", "module": "", "message": text, "metadata": {}}

    body = decode_body(payload, content_format)
    if not isinstance(body, dict):
        raise InvalidInput(
            "cannot store log entry: the body must be a map with level, module and msg"
        )
    fields = dict(body)
    level = _level(fields.pop("level", "info"))
    module = fields.pop("module", None)
    if not isinstance(module, str):
        raise InvalidInput(
            f"cannot store log entry: module must be text, not {module!r:.40}"
        )
    message = fields.pop("msg", None)
    if message is None:
        message = fields.pop("message", None)
    if not isinstance(message, str):
        raise InvalidInput(
            f"cannot store log entry: msg must be text, not {message!r:.40}"
        )
    return {"level": level, "module": module, "message": message, "metadata": fields}


def _level(value: Any) -> str:
    """Return the level name of ``value``, a name or number of the SDK's levels."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(LEVELS):
            return LEVELS[value]
    elif isinstance(value, str):
        name = value.lower()
        if name == "warning":
            return "warn"
        if name in LEVELS:
            return name
    raise InvalidInput(
        f"cannot store log entry: level must be one of {', '.join(LEVELS)} "
        f"or 0 to {len(LEVELS) - 1}, not {value!r:.40}"
    )
