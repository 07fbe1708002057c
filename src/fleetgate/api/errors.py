"""Every failure as JSON ``{"code": "<reason>", "message": "..."}``.

``code`` is a stable reason from :class:`fleetgate.errors.Reason`, such
as ``not_a_ca`` or ``revoked_api_key``, which scripts can branch on;
``message`` is for people. Golioth's own error bodies carry a numeric
``code``, so scripts that read Golioth's codes see strings here.

Three layers produce these bodies:

- a :class:`~fleetgate.errors.FleetgateError` from a route or the store
  renders with its own ``http_status`` and ``reason``;
- request validation (a wrong type, a missing field, a query parameter
  out of range) becomes 422 ``invalid_request`` with one line per
  problem, which never echoes the values sent;
- :class:`GuardMiddleware` turns any other exception into 500
  ``internal_error`` with a generic message and logs the traceback.
  It also rejects request bodies over :data:`MAX_BODY_BYTES`, or over
  the larger limit of a route that takes uploads, with 413
  ``payload_too_large``. On the web console's paths it hands such a
  request to the app without its body instead, marked with
  :data:`OVERSIZED_BODY_STATE`, so the console can show the error in
  its page.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetgate import metrics
from fleetgate.errors import FleetgateError, Reason, StoreUnavailable, Unauthenticated

log = logging.getLogger(__name__)

# Bodies are a CA certificate in base64, a device or a state value, all
# far below this.
MAX_BODY_BYTES = 1024 * 1024
# The request state key, in ``scope["state"]``, of an oversized body
# handed to the app: an :class:`OversizedBody`.
OVERSIZED_BODY_STATE = "fleetgate_oversized_body"
# The start of an oversized body kept for the app, enough for the part
# headers of a form's first fields (such as an upload's file name).
OVERSIZED_BODY_HEAD_BYTES = 8 * 1024
# An oversized body handed to the app is read to its end first, so the
# browser gets the response instead of a reset connection, up to this.
MAX_DRAINED_BYTES = 64 * 1024 * 1024

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_HTTP_REASONS = {
    404: Reason.NOT_FOUND,
    405: Reason.METHOD_NOT_ALLOWED,
    413: Reason.PAYLOAD_TOO_LARGE,
}


def error_body(code: str, message: str) -> dict[str, Any]:
    """Return the JSON body of an error response."""
    return {"code": code, "message": message}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that render errors as JSON bodies."""
    app.add_exception_handler(FleetgateError, _fleetgate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)


async def _fleetgate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FleetgateError)
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        # RFC 9110, section 11.6.1: a 401 names the scheme it expects.
        headers["WWW-Authenticate"] = 'Bearer realm="fleetgate"'
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, StoreUnavailable):
        # The database's outage monitor logs the outage once, not per request.
        log.debug(
            "api request failed method=%s path=%s reason=%s",
            request.method,
            request.url.path,
            exc.reason,
        )
    elif exc.http_status >= 500:
        # Provider failures: Fleetgate cannot serve.
        log.error(
            "api request failed method=%s path=%s reason=%s error=%s",
            request.method,
            request.url.path,
            exc.reason,
            exc.message,
        )
    return JSONResponse(
        error_body(exc.reason, exc.message),
        status_code=exc.http_status,
        headers=headers or None,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [describe_problem(error) for error in exc.errors()]
    message = "cannot accept request: " + "; ".join(problems)
    return JSONResponse(error_body(Reason.INVALID_REQUEST, message), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    reason = _HTTP_REASONS.get(exc.status_code, Reason.INVALID_REQUEST)
    if exc.status_code == 404:
        message = f"cannot find {request.url.path!r}: no such route"
    elif exc.status_code == 405:
        message = f"cannot {request.method} {request.url.path!r}: method not allowed"
    else:
        message = f"cannot accept request: {exc.detail}"
    return JSONResponse(
        error_body(reason, message),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def _measure(scope: Scope, status: int, seconds: float) -> None:
    # The route template, such as /v1/projects/{project_id}/devices, and
    # not the path, so that each route is one series whatever IDs it
    # carries. Unknown methods share one label value for the same reason.
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    method = str(scope.get("method", "-"))
    metrics.HTTP_REQUEST_SECONDS.labels(
        method=method if method in _METHODS else "other",
        route=route,
        status_class=f"{status // 100}xx",
    ).observe(seconds)


def describe_problem(error: Any) -> str:
    """Return one pydantic validation error as ``location: message``.

    Locations start with where the value came from: body, query, path or
    header. A model validated on its own reports the whole value with an
    empty location, which reads as ``body``. The value itself is left
    out, because it may be long (a certificate) or private.
    """
    location = ".".join(str(part) for part in error.get("loc", ())) or "body"
    return f"{location}: {error.get('msg', 'invalid value')}"


@dataclasses.dataclass(frozen=True)
class OversizedBody:
    """A body over its limit, handed to the app without its content."""

    limit: int
    # The first OVERSIZED_BODY_HEAD_BYTES bytes of the body.
    head: bytes


class GuardMiddleware:
    """Bounds request bodies, turns unexpected exceptions into JSON 500s,
    and logs each request at DEBUG.

    A body is read whole, up to :data:`MAX_BODY_BYTES`, before the app
    runs, so an oversized upload is rejected before any route runs.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        body_limits: Sequence[tuple[re.Pattern[str], int]] = (),
        page_paths: re.Pattern[str] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Paths, matched whole, whose bodies may reach another limit.
        self.body_limits = tuple(body_limits)
        # Paths, matched whole, whose app answers an oversized body itself.
        self.page_paths = page_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request through the app under the body limit and the guard."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        path = str(scope.get("path", ""))
        limit = self._limit_for(path)
        to_page = self.page_paths is not None and bool(self.page_paths.fullmatch(path))
        head: list[bytes] = []
        body = await self._read_body(receive, limit, head, drain=to_page)
        if body is None and to_page:
            oversized = OversizedBody(limit, b"".join(head))
            state = {**scope.get("state", {}), OVERSIZED_BODY_STATE: oversized}
            scope = {**scope, "state": state}
            body = b""
        if body is None:
            await self._send_error(
                send,
                413,
                Reason.PAYLOAD_TOO_LARGE,
                f"cannot accept request: the body exceeds {limit} bytes",
            )
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            # After the body, wait for the client to go away, as a
            # server's receive() does.
            return await receive()

        status = 0
        started_at = time.perf_counter()

        async def tracked_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, replay, tracked_send)
            log.debug(
                "api request method=%s path=%s status=%d ms=%.1f",
                scope.get("method", "-"),
                scope.get("path", "-"),
                status,
                (time.perf_counter() - started_at) * 1000,
            )
            _measure(scope, status, time.perf_counter() - started_at)
        except Exception:
            log.exception(
                "api request failed method=%s path=%s reason=internal_error",
                scope.get("method", "-"),
                scope.get("path", "-"),
            )
            _measure(scope, status or 500, time.perf_counter() - started_at)
            if status:
                raise
            await self._send_error(
                send,
                500,
                Reason.INTERNAL_ERROR,
                "internal server error; the server log has the details",
            )

    def _limit_for(self, path: str) -> int:
        for pattern, limit in self.body_limits:
            if pattern.fullmatch(path):
                return limit
        return self.max_body_bytes

    async def _read_body(
        self, receive: Receive, limit: int, head: list[bytes], *, drain: bool
    ) -> bytes | None:
        """Return the whole body, or None past ``limit`` with its start in ``head``.

        With ``drain`` the rest of an oversized body is read and dropped.
        """
        chunks: list[bytes] = []
        size = 0
        # Every message but the last carries at least one byte from a
        # well-behaved server, so this many messages always suffice.
        for _ in range(limit + 2):
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                head.append(b"".join([*chunks, chunk])[:OVERSIZED_BODY_HEAD_BYTES])
                if drain and message.get("more_body", False):
                    await self._drain(receive)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        return None

    @staticmethod
    async def _drain(receive: Receive) -> None:
        """Read and drop the rest of a body, up to MAX_DRAINED_BYTES."""
        size = 0
        for _ in range(MAX_DRAINED_BYTES + 1):
            message = await receive()
            size += len(message.get("body", b""))
            if (
                message["type"] != "http.request"
                or not message.get("more_body", False)
                or size > MAX_DRAINED_BYTES
            ):
                return

    @staticmethod
    async def _send_error(send: Send, status: int, code: str, message: str) -> None:
        payload = json.dumps(error_body(code, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
