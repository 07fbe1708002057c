"""Requests, responses and routing for the device-facing CoAP resources.

A service receives a decoded :class:`CoapRequest` from an authenticated,
associated device and returns a :class:`CoapResponse`; message IDs,
tokens, retransmissions and encryption are the endpoint's business.
Routing is by the first Uri-Path segment (``.d``, ``.s``, ``v1``...),
which is how Golioth's firmware SDK addresses its services.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import cbor2
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from fleetgate.errors import InvalidInput

# CoAP Content-Formats (RFC 7252 section 12.3, RFC 8949).
TEXT_PLAIN = 0
OCTET_STREAM = 42
JSON = 50
CBOR = 60


@dataclasses.dataclass(frozen=True)
class ConnectedDevice:
    """The device behind an established session."""

    project_id: str
    device_id: str
    device_name: str
    # The device's certificate ID; a device that connected with a PSK
    # and never with a certificate has none.
    certificate_id: str | None
    # The psk-id of the identity, for a session authenticated by PSK.
    psk_id: str | None = None


@dataclasses.dataclass(frozen=True)
class CoapRequest:
    """One request from a device, with the options services look at."""

    device: ConnectedDevice
    method: Code
    path: tuple[str, ...]
    payload: bytes = b""
    content_format: int | None = None
    accept: int | None = None
    observe: int | None = None
    query: tuple[str, ...] = ()
    # The Block2 option, for a resource that cuts its own blocks.
    block2: BlockOption.BlockwiseTuple | None = None


@dataclasses.dataclass(frozen=True)
class CoapResponse:
    """A response code, body and the options that go with it."""

    code: Code
    payload: bytes = b""
    content_format: int | None = None
    max_age: int | None = None
    # Options that the endpoint's Observe and block-wise layers set.
    observe: int | None = None
    etag: bytes | None = None
    block1: BlockOption.BlockwiseTuple | None = None
    block2: BlockOption.BlockwiseTuple | None = None
    size1: int | None = None
    size2: int | None = None

    @classmethod
    def diagnostic(cls, code: Code, message: str) -> CoapResponse:
        """Return an error response whose body explains it (RFC 7252 5.5.2)."""
        return cls(code, message.encode("utf-8"), TEXT_PLAIN)


Handler = Callable[[CoapRequest], Awaitable[CoapResponse]]


def response_message(response: CoapResponse) -> Message:
    """Build a message with the response's code, body and options.

    The caller sets its type, message ID and token.
    """
    message = Message(code=response.code, payload=response.payload)
    options = message.opt
    if response.content_format is not None:
        options.content_format = response.content_format
    if response.max_age is not None:
        options.max_age = response.max_age
    if response.observe is not None:
        options.observe = response.observe
    if response.etag is not None:
        options.etag = response.etag
    if response.block1 is not None:
        options.block1 = response.block1
    if response.block2 is not None:
        options.block2 = response.block2
    if response.size1 is not None:
        options.size1 = response.size1
    if response.size2 is not None:
        options.size2 = response.size2
    return message


class Router:
    """Dispatches requests to services by their first path segment."""

    def __init__(self) -> None:
        self._routes: dict[str, Handler] = {}

    def add(self, prefix: str, handler: Handler) -> None:
        """Route requests whose first path segment is ``prefix`` to ``handler``."""
        if prefix in self._routes:
            raise ValueError(f"cannot add route {prefix!r}: already routed")
        self._routes[prefix] = handler

    def resolve(self, path: tuple[str, ...]) -> Handler | None:
        """Return the handler for ``path``, or None when nothing serves it."""
        if not path:
            return None
        return self._routes.get(path[0])


def decode_body(payload: bytes, content_format: int | None) -> Any:
    """Decode a JSON or CBOR request body; no Content-Format means JSON.

    The body must be exactly one item: bytes after it raise InvalidInput.
    """
    if content_format in (None, JSON):
        try:
            return json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"cannot decode body: invalid JSON ({exc})") from exc
        except RecursionError as exc:
            raise InvalidInput("cannot decode body: JSON nested too deeply") from exc
        except ValueError as exc:
            # Integers beyond Python's int-to-string digit limit, for one.
            raise InvalidInput(f"cannot decode body: unsupported JSON ({exc})") from exc
    if content_format == CBOR:
        stream = io.BytesIO(payload)
        try:
            value = cbor2.CBORDecoder(stream).decode()
        except (cbor2.CBORDecodeError, ValueError) as exc:
            raise InvalidInput(f"cannot decode body: invalid CBOR ({exc})") from exc
        # cbor2.loads stops after the first item and ignores the rest.
        trailing = len(payload) - stream.tell()
        if trailing:
            raise InvalidInput(
                f"cannot decode body: {trailing} bytes follow the CBOR item, "
                "send exactly one item"
            )
        return _json_compatible(value)
    raise UnsupportedContentFormat(content_format)


def encode_body(value: Any, accept: int | None) -> tuple[bytes, int]:
    """Encode ``value`` as CBOR when the device accepts it, JSON otherwise."""
    if accept == CBOR:
        return cbor2.dumps(value), CBOR
    if accept not in (None, JSON):
        raise NotAcceptable(accept)
    return json.dumps(value, separators=(",", ":")).encode("utf-8"), JSON


class UnsupportedContentFormat(InvalidInput):
    """A request body is in a Content-Format the resource does not take."""

    coap_code = "4.15"

    def __init__(self, content_format: int | None) -> None:
        super().__init__(
            f"cannot decode body: unsupported Content-Format {content_format}, "
            f"send JSON ({JSON}) or CBOR ({CBOR})"
        )


class NotAcceptable(InvalidInput):
    """The Accept option names a format the resource cannot produce."""

    coap_code = "4.06"

    def __init__(self, accept: int | None) -> None:
        super().__init__(
            f"cannot encode response: Accept {accept} is not supported, "
            f"accept JSON ({JSON}) or CBOR ({CBOR})"
        )


def _json_compatible(value: Any) -> Any:
    """Check that a CBOR value can be stored as JSON (string keys, no bytes)."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(
                    f"cannot store CBOR map key {key!r}: keys must be text strings"
                )
            result[key] = _json_compatible(item)
        return result
    if isinstance(value, list):
        return [_json_compatible(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise InvalidInput(
        f"cannot store CBOR value of type {type(value).__name__}: "
        "only maps, arrays, text, numbers, booleans and null are stored"
    )
