"""Remote procedure calls to devices on ``.rpc`` and ``.rpc/status``.

Golioth's firmware SDK (``src/rpc.c``) observes ``.rpc`` with Accept
CBOR once the application registers its first method. It ignores a
payload that is the CBOR text ``"OK"``, which is what the registration
gets here. Each later notification is one call, a CBOR map of ``id``
(text), ``method`` (text) and ``params`` (an array). The device posts
its reply to ``.rpc/status`` as a CBOR map of the same ``id``,
``statusCode`` (an ``enum golioth_rpc_status``, ``GOLIOTH_RPC_UNKNOWN``
for a method it has not registered) and, for a registered method, a
``detail`` map.

:meth:`RpcService.call` sends a call and waits for that reply. Calls
reach only devices connected to this process. Under ``fleetgate serve
--workers N`` the parent sends each call to every worker
(:class:`fleetgate.gateway.workers.WorkerPool`). A device connected to
another Fleetgate server sharing the database is reported as not
connected.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from typing import Any

import cbor2
from aiocoap.numbers.codes import Code

from fleetgate.errors import Conflict, FleetgateError, InvalidInput, Reason
from fleetgate.gateway.observe import ObserverRegistry
from fleetgate.gateway.resources import (
    CBOR,
    CoapRequest,
    CoapResponse,
    decode_body,
)

log = logging.getLogger(__name__)

PREFIX = ".rpc"
# A call travels in one notification: a larger one would need Block2,
# and the device's requests for the later blocks would get the
# registration's "OK" instead of the call.
MAX_CALL_BYTES = 1024
MAX_REPLY_BYTES = 4096
MAX_TIMEOUT_SECONDS = 300.0
# Calls waiting for a reply, across all devices of the gateway.
MAX_PENDING_CALLS = 1024


class DeviceNotConnected(Conflict):
    """The device is not observing ``.rpc`` through this process."""

    reason = Reason.DEVICE_NOT_CONNECTED


class RpcTimedOut(FleetgateError):
    """The device did not reply to a call within its timeout."""

    http_status = 504
    coap_code = "5.04"
    reason = Reason.RPC_TIMED_OUT


@dataclasses.dataclass(frozen=True)
class RpcResult:
    """A device's reply to one call."""

    id: str
    status_code: int
    detail: Any


class RpcService:
    """Sends calls to observing devices and matches their replies."""

    def __init__(self, observers: ObserverRegistry) -> None:
        self._observers = observers
        self._pending: dict[tuple[str, str], asyncio.Future[RpcResult]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set the event loop that serves the devices; calls run there."""
        self._loop = loop

    async def handle(self, request: CoapRequest) -> CoapResponse:
        """Serve ``GET .rpc`` (the registration) and ``POST .rpc/status``."""
        # The SDK joins ".rpc/" and an empty name, so a trailing empty
        # Uri-Path segment may arrive.
        steps = tuple(step for step in request.path[1:] if step)
        if not steps and request.method is Code.GET:
            return CoapResponse(Code.CONTENT, cbor2.dumps("OK"), CBOR)
        if steps == ("status",) and request.method in (Code.POST, Code.PUT):
            return self._take_reply(request)
        if steps in ((), ("status",)):
            return CoapResponse.diagnostic(
                Code.METHOD_NOT_ALLOWED,
                f"{request.method.name} is not allowed on /{'/'.join(request.path)}",
            )
        return CoapResponse.diagnostic(
            Code.NOT_FOUND, f"no resource at /{'/'.join(request.path)}"
        )

    async def call(
        self,
        project_id: str,
        device_id: str,
        method: str,
        params: list[Any],
        timeout: float,
    ) -> RpcResult:
        """Send a call to the device and return its reply; from any event loop.

        Raises DeviceNotConnected when the device does not observe
        ``.rpc`` through this process, RpcTimedOut after ``timeout``
        seconds without a reply, and InvalidInput for a call too large.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            raise DeviceNotConnected(
                f"cannot call device {device_id!r}: the device gateway is not "
                "running in this process"
            )
        coroutine = self._call(project_id, device_id, method, params, timeout)
        if loop is asyncio.get_running_loop():
            return await coroutine
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        return await asyncio.wrap_future(future)

    async def _call(
        self,
        project_id: str,
        device_id: str,
        method: str,
        params: list[Any],
        timeout: float,
    ) -> RpcResult:
        observations = self._observers.observations_of(project_id, device_id, PREFIX)
        if not observations:
            raise DeviceNotConnected(
                f"cannot call device {device_id!r}: it is not connected to this "
                "Fleetgate process or does not observe .rpc, so retry once it "
                "has connected and registered an RPC method"
            )
        if len(self._pending) >= MAX_PENDING_CALLS:
            raise Conflict(
                f"cannot call device {device_id!r}: {MAX_PENDING_CALLS} calls "
                "already wait for replies, retry later"
            )
        call_id = secrets.token_hex(8)
        payload = cbor2.dumps({"id": call_id, "method": method, "params": params})
        if len(payload) > MAX_CALL_BYTES:
            raise InvalidInput(
                f"cannot call device {device_id!r}: the encoded call has "
                f"{len(payload)} bytes, over the maximum of {MAX_CALL_BYTES}"
            )

        key = (device_id, call_id)
        reply: asyncio.Future[RpcResult] = asyncio.get_running_loop().create_future()
        self._pending[key] = reply
        log.info(
            "rpc call sent project=%s device=%s method=%s id=%s",
            project_id,
            device_id,
            method,
            call_id,
        )
        try:
            # The timeout covers sending too, because a confirmable
            # notification waits for its acknowledgement.
            async with asyncio.timeout(timeout):
                notification = CoapResponse(Code.CONTENT, payload, CBOR)
                for observation in observations:
                    await self._observers.send(observation, notification)
                return await reply
        except TimeoutError:
            log.warning(
                "rpc call timed out project=%s device=%s method=%s id=%s timeout=%.1fs",
                project_id,
                device_id,
                method,
                call_id,
                timeout,
            )
            raise RpcTimedOut(
                f"device {device_id!r} did not reply to call {method!r} within "
                f"{timeout:g} s"
            ) from None
        finally:
            self._pending.pop(key, None)

    def _take_reply(self, request: CoapRequest) -> CoapResponse:
        if len(request.payload) > MAX_REPLY_BYTES:
            return CoapResponse.diagnostic(
                Code.REQUEST_ENTITY_TOO_LARGE,
                f"RPC reply of {len(request.payload)} bytes exceeds "
                f"the maximum of {MAX_REPLY_BYTES}",
            )
        body = decode_body(request.payload, request.content_format)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise InvalidInput(
                "cannot take RPC reply: the body must be a map with a text id"
            )
        status_code = body.get("statusCode")
        if not isinstance(status_code, int) or isinstance(status_code, bool):
            raise InvalidInput("cannot take RPC reply: statusCode must be an integer")

        device_id = request.device.device_id
        waiter = self._pending.get((device_id, body["id"]))
        if waiter is None or waiter.done():
            # A reply after the timeout, or to another process's call, is
            # logged and still gets 2.04, because the device did its part.
            log.warning(
                "rpc reply matches no waiting call project=%s device=%s id=%s",
                request.device.project_id,
                device_id,
                body["id"],
            )
            return CoapResponse(Code.CHANGED)
        waiter.set_result(RpcResult(body["id"], status_code, body.get("detail")))
        return CoapResponse(Code.CHANGED)
