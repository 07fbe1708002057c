"""Firmware updates from the device side, as Golioth's firmware SDK does them.

The steps of one update, each a function over a connected
:class:`~fleetgate.client.coap.DeviceClient`::

    manifest = fetch_manifest(device)
    component = manifest.component("main")
    report_state(device, "main", DOWNLOADING, current="1.0.0",
                 target=component.version)
    image = download_component(device, component)  # checks the SHA-256
    report_state(device, "main", DOWNLOADED, ...)

:func:`parse_manifest` also decodes the body of an Observe notification
of ``.u/desired``. A manifest over 1024 bytes arrives in a notification
as its first block only (RFC 7959, 2.6), so call :func:`fetch_manifest`
when the notification carries a Block2 option with the More flag.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Any

import cbor2

from fleetgate.client import CBOR
from fleetgate.client.coap import CoapReply, DeviceClient
from fleetgate.client.errors import ClientError, RequestRejected

MANIFEST_PATH = ".u/desired"
COMPONENT_PREFIX = ".u/c/"

# The SDK's enum golioth_ota_state.
IDLE = 0
DOWNLOADING = 1
DOWNLOADED = 2
UPDATING = 3

# The SDK's enum golioth_ota_reason, the values a device reports most.
READY = 0
FIRMWARE_UPDATED_SUCCESSFULLY = 1
INTEGRITY_CHECK_FAILURE = 5


class ManifestInvalid(ClientError):
    """The manifest body is not the CBOR map the SDK parses."""


class IntegrityCheckFailed(ClientError):
    """A downloaded image does not match the size or SHA-256 of its manifest."""


@dataclasses.dataclass(frozen=True)
class Component:
    """One firmware component of a manifest."""

    package: str
    version: str
    sha256: str
    size: int
    uri: str
    bootloader: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The desired manifest: sequence number, hash and components."""

    sequence: int
    digest: str
    components: tuple[Component, ...]

    def component(self, package: str) -> Component | None:
        """Return the component of ``package``, or None when absent."""
        for item in self.components:
            if item.package == package:
                return item
        return None


def parse_manifest(payload: bytes) -> Manifest:
    """Decode a CBOR manifest with the SDK's integer keys; raise ManifestInvalid."""
    try:
        body = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise ManifestInvalid(f"cannot parse manifest: invalid CBOR ({exc})") from exc
    if not isinstance(body, dict):
        raise ManifestInvalid("cannot parse manifest: the body is not a map")
    items = body.get(3, [])
    if not isinstance(items, list):
        raise ManifestInvalid("cannot parse manifest: key 3 is not a list")
    return Manifest(
        sequence=_field(body, 1, int),
        digest=_field(body, 2, str),
        components=tuple(_component(item) for item in items),
    )


def fetch_manifest(device: DeviceClient) -> Manifest:
    """GET ``.u/desired`` in CBOR, block-wise when large, and parse it."""
    reply = device.get_blockwise(MANIFEST_PATH, accept=CBOR)
    _require_success(reply, f"GET /{MANIFEST_PATH}")
    return parse_manifest(reply.payload)


def download_component(
    device: DeviceClient, component: Component, *, szx: int = 6
) -> bytes:
    """Download a component block-wise and check its size and SHA-256."""
    path = component.uri.lstrip("/")
    reply = device.get_blockwise(path, szx=szx, max_bytes=component.size)
    _require_success(reply, f"GET /{path}")
    image = reply.payload
    if len(image) != component.size:
        raise IntegrityCheckFailed(
            f"cannot use {component.package}@{component.version}: downloaded "
            f"{len(image)} bytes, the manifest says {component.size}"
        )
    digest = hashlib.sha256(image).hexdigest()
    if not hmac.compare_digest(digest, component.sha256.lower()):
        raise IntegrityCheckFailed(
            f"cannot use {component.package}@{component.version}: its SHA-256 "
            f"is {digest}, the manifest says {component.sha256}"
        )
    return image


def report_state(
    device: DeviceClient,
    package: str,
    state: int,
    *,
    reason: int = READY,
    current: str | None = None,
    target: str | None = None,
) -> CoapReply:
    """POST a component state report to ``.u/c/<package>`` as the SDK encodes it."""
    body: dict[str, Any] = {"s": state, "r": reason, "pkg": package}
    if current:
        body["v"] = current
    if target:
        body["t"] = target
    return device.request(
        "POST",
        COMPONENT_PREFIX + package,
        cbor2.dumps(body),
        content_format=CBOR,
    )


def _component(item: Any) -> Component:
    if not isinstance(item, dict):
        raise ManifestInvalid("cannot parse manifest: a component is not a map")
    return Component(
        package=_field(item, 1, str),
        version=_field(item, 2, str),
        sha256=_field(item, 3, str),
        size=_field(item, 4, int),
        uri=_field(item, 5, str),
        bootloader=_field(item, 6, str),
    )


def _field(body: dict[Any, Any], key: int, kind: type[Any]) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ManifestInvalid(
            f"cannot parse manifest: key {key} must be {kind.__name__}, not {value!r}"
        )
    return value


def _require_success(reply: CoapReply, action: str) -> None:
    if not reply.successful:
        detail = reply.payload.decode("utf-8", "replace")
        raise RequestRejected(f"cannot {action}: {reply.code} {detail}".rstrip())
