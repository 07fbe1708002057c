"""LightDB State on ``.d/<path>``: a JSON document per device.

``GET`` reads the value at a path (the whole document at ``.d``),
``POST`` and ``PUT`` replace it, creating the objects on the way, and
``DELETE`` removes it. Bodies are JSON (Content-Format 50, also assumed
when the option is absent) or CBOR (60); responses follow the Accept
option. Path segments are object keys, so arrays are values, never
containers addressed by index. A GET with the Observe option reads a
missing value as null with 2.05 instead of 4.04, so that a device can
observe a path before anything is stored there (RFC 7641 section 4.2
would end the observation at the first error notification).
"""

from __future__ import annotations

import functools

from aiocoap.numbers.codes import Code

from fleetgate.errors import NotFound
from fleetgate.gateway import reads
from fleetgate.gateway.resources import (
    CoapRequest,
    CoapResponse,
    decode_body,
    encode_body,
)
from fleetgate.gateway.writes import DeviceWriter
from fleetgate.store import state as state_store
from fleetgate.store.database import Database

PREFIX = ".d"
# A LightDB State value travels in one CoAP message until block-wise
# transfer is served, so it is bounded by what one DTLS record carries.
MAX_VALUE_BYTES = 16 * 1024


class StateService:
    """Serves one device's LightDB State from the store.

    Reads run through :func:`fleetgate.gateway.reads.read`, and writes
    through the process's device writer.
    """

    def __init__(self, db: Database, writer: DeviceWriter) -> None:
        self._db = db
        self._writer = writer

    async def handle(self, request: CoapRequest) -> CoapResponse:
        """Serve a GET, POST, PUT or DELETE on ``.d/<path>``."""
        path = request.path[1:]
        device_id = request.device.device_id

        if request.method is Code.GET:
            try:
                value = await reads.read(
                    self._db, state_store.get_state, self._db, device_id, path
                )
            except NotFound:
                if request.observe is None:
                    raise
                # An observer waits for a value that is not there yet, or
                # learns that it was deleted: Golioth's SDK examples observe
                # desired/my_config and read null as "nothing stored", so
                # the registration and its notifications stay 2.05.
                value = None
            payload, content_format = encode_body(value, request.accept)
            return CoapResponse(Code.CONTENT, payload, content_format)

        if request.method in (Code.POST, Code.PUT):
            if len(request.payload) > MAX_VALUE_BYTES:
                return CoapResponse.diagnostic(
                    Code.REQUEST_ENTITY_TOO_LARGE,
                    f"value of {len(request.payload)} bytes exceeds "
                    f"the maximum of {MAX_VALUE_BYTES}",
                )
            value = decode_body(request.payload, request.content_format)
            await self._writer.apply(
                device_id,
                functools.partial(
                    state_store.set_state_in,
                    device_id=device_id,
                    path=path,
                    value=value,
                ),
            )
            return CoapResponse(Code.CHANGED)

        if request.method is Code.DELETE:
            # RFC 7252 5.8.4: 2.02 also when the resource did not exist.
            await self._writer.apply(
                device_id,
                functools.partial(
                    state_store.delete_state_in,
                    device_id=device_id,
                    path=path,
                    missing_ok=True,
                ),
            )
            return CoapResponse(Code.DELETED)

        return CoapResponse.diagnostic(
            Code.METHOD_NOT_ALLOWED, f"{request.method.name} is not allowed on .d"
        )
