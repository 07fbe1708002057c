"""Firmware updates on ``.u``: the desired manifest, downloads and reports.

What Golioth's firmware SDK (``src/ota.c``) sends and parses:

- ``GET .u/desired`` with Observe and Accept CBOR reads the manifest, a
  CBOR map with integer keys: 1 the sequence number, 2 a hash of the
  manifest, 3 the list of components. Each component is a map of 1
  package, 2 version, 3 the SHA-256 of the image in lowercase hex, 4 its
  size, 5 the URI to download it from and 6 the bootloader name. The SDK
  rejects a component that lacks any of these keys. A device observing
  the manifest is notified when a release rolled out to it changes.
  Accept JSON gives the same manifest with names for keys.
- ``GET <uri>``, that is ``.u/c/<package>@<version>``, downloads the
  image block-wise (RFC 7959), octet-stream, 1024-byte blocks unless the
  device requests smaller ones. Only the requested block is read from
  the store. The Accept option is ignored, because the SDK's block
  download sends Accept JSON for this binary body.
- ``POST .u/c/<package>`` with a CBOR map ``s`` (state), ``r`` (reason),
  ``pkg``, and optionally ``v`` (current version) and ``t`` (target
  version) reports the state of one component. The report is stored and
  the response is 2.04 Changed. Beyond the device's rate limit
  (:class:`~fleetgate.config.DeviceRateLimits`, 1 per second with
  bursts of 20 by default) a report gets 4.29 with Max-Age and is not
  stored, so the device sees that it failed.

Artifacts are looked up in the device's own project only, so the URI of
another project's artifact gets 4.04.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
from typing import Any

import cbor2
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from fleetgate.config import DEFAULT_RATE_LIMITS, DeviceRateLimits
from fleetgate.errors import InvalidInput, NotFound, RateLimited
from fleetgate.gateway import reads
from fleetgate.gateway.blockwise import MAX_BLOCK_BYTES, MAX_SZX
from fleetgate.gateway.ratelimit import DeviceRateLimiter
from fleetgate.gateway.resources import (
    CBOR,
    JSON,
    OCTET_STREAM,
    CoapRequest,
    CoapResponse,
    NotAcceptable,
    decode_body,
    encode_body,
)
from fleetgate.gateway.writes import DeviceWriter
from fleetgate.store import ota_artifacts, ota_releases, ota_reports
from fleetgate.store.database import Database
from fleetgate.store.ota_artifacts import ArtifactRecord
from fleetgate.store.ota_reports import ComponentReason, ComponentState

log = logging.getLogger(__name__)

PREFIX = ".u"
# The SDK encodes its report in a 64-byte buffer, so this leaves room
# for other clients' longer reports.
MAX_REPORT_BYTES = 1024
# Chunks of recent downloads kept in memory: 32 of 64 KiB is 2 MiB, and
# a device reading 1024-byte blocks in order hits the cache 63 times in 64.
CACHED_CHUNKS = 32
# The ETag of a block is the start of the image's SHA-256.
ETAG_BYTES = 8
_FAILURE_REASONS = frozenset(ComponentReason) - {
    ComponentReason.READY,
    ComponentReason.FIRMWARE_UPDATED_SUCCESSFULLY,
}


class OtaService:
    """Serves manifests and artifact blocks, and stores component reports."""

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
            ".u/c", limits.report_rate, limits.report_burst, limits
        )
        self._chunks: collections.OrderedDict[tuple[str, int], bytes] = (
            collections.OrderedDict()
        )
        # Store reads may run in worker threads on PostgreSQL.
        self._lock = threading.Lock()

    async def handle(self, request: CoapRequest) -> CoapResponse:
        """Serve ``GET .u/desired``, ``GET .u/c/<package>@<version>`` and reports."""
        steps = tuple(step for step in request.path[1:] if step)
        if steps == ("desired",):
            if request.method is not Code.GET:
                return _not_allowed(request, "GET")
            return await self._manifest(request)
        if len(steps) == 2 and steps[0] == "c":
            package, at, version = steps[1].partition("@")
            if at:
                if request.method is not Code.GET:
                    return _not_allowed(request, "GET")
                return await self._download(request, package, version)
            if request.method not in (Code.POST, Code.PUT):
                return _not_allowed(request, "POST")
            return await self._store_report(request, package)
        return CoapResponse.diagnostic(
            Code.NOT_FOUND, f"no resource at /{'/'.join(request.path)}"
        )

    async def _manifest(self, request: CoapRequest) -> CoapResponse:
        device = request.device
        manifest = await reads.read(
            self._db,
            ota_releases.desired_manifest,
            self._db,
            device.project_id,
            device.device_id,
        )
        if request.accept == JSON:
            payload, content_format = encode_body(_named(manifest), JSON)
            return CoapResponse(Code.CONTENT, payload, content_format)
        if request.accept not in (None, CBOR):
            raise NotAcceptable(request.accept)
        body = {
            1: manifest.sequence,
            2: manifest.digest,
            3: [_component(item) for item in manifest.components],
        }
        return CoapResponse(Code.CONTENT, cbor2.dumps(body), CBOR)

    async def _download(
        self, request: CoapRequest, package: str, version: str
    ) -> CoapResponse:
        device = request.device
        try:
            artifact = await reads.read(
                self._db,
                ota_artifacts.find_artifact,
                self._db,
                device.project_id,
                package,
                version,
            )
        except NotFound:
            log.warning(
                "artifact not found project=%s device=%s package=%r version=%r "
                "reason=not_found",
                device.project_id,
                device.device_id,
                package,
                version,
            )
            raise

        requested = request.block2
        if requested is None and artifact.size <= MAX_BLOCK_BYTES:
            content = await self._read(artifact, 0, artifact.size)
            return CoapResponse(Code.CONTENT, content, OCTET_STREAM)
        if requested is None:
            requested = BlockOption.BlockwiseTuple(0, False, MAX_SZX)
        if requested.size_exponent > MAX_SZX:
            return CoapResponse.diagnostic(
                Code.BAD_REQUEST, "Block2 SZX 7 (BERT) is not supported over UDP"
            )
        size = requested.size
        start = requested.block_number * size
        if start >= artifact.size:
            return CoapResponse.diagnostic(
                Code.BAD_OPTION,
                f"Block2 {requested.block_number} of {size} bytes is past the "
                f"end of the {artifact.size}-byte artifact {package}@{version}",
            )

        content = await self._read(artifact, start, size)
        if requested.block_number == 0:
            log.info(
                "artifact download started project=%s device=%s artifact=%s@%s size=%d",
                device.project_id,
                device.device_id,
                package,
                version,
                artifact.size,
            )
        more = start + len(content) < artifact.size
        return CoapResponse(
            Code.CONTENT,
            content,
            OCTET_STREAM,
            etag=bytes.fromhex(artifact.sha256)[:ETAG_BYTES],
            block2=BlockOption.BlockwiseTuple(
                requested.block_number, more, requested.size_exponent
            ),
            size2=artifact.size if requested.block_number == 0 else None,
        )

    async def _read(self, artifact: ArtifactRecord, start: int, length: int) -> bytes:
        """Return ``length`` bytes of the image from ``start``, chunk by chunk."""
        end = min(start + length, artifact.size)
        parts = []
        position = start
        while position < end:
            index, offset = divmod(position, artifact.chunk_size)
            chunk = await self._chunk(artifact.id, index)
            part = chunk[offset : offset + end - position]
            if not part:
                break  # a stored image shorter than its size; never expected
            parts.append(part)
            position += len(part)
        return b"".join(parts)

    async def _chunk(self, artifact_id: str, index: int) -> bytes:
        key = (artifact_id, index)
        with self._lock:
            cached = self._chunks.get(key)
            if cached is not None:
                self._chunks.move_to_end(key)
                return cached
        chunk = await reads.read(
            self._db, ota_artifacts.read_chunk, self._db, artifact_id, index
        )
        with self._lock:
            self._chunks[key] = chunk
            while len(self._chunks) > CACHED_CHUNKS:
                self._chunks.popitem(last=False)
        return chunk

    async def _store_report(self, request: CoapRequest, package: str) -> CoapResponse:
        if len(request.payload) > MAX_REPORT_BYTES:
            return CoapResponse.diagnostic(
                Code.REQUEST_ENTITY_TOO_LARGE,
                f"component report of {len(request.payload)} bytes exceeds "
                f"the maximum of {MAX_REPORT_BYTES}",
            )
        ota_artifacts.validate_package(package)
        report = decode_body(request.payload, request.content_format)
        fields = _report_fields(report, package)
        device = request.device
        if not self.limiter.allow(device.device_id, project_id=device.project_id):
            raise RateLimited(
                f"cannot store report of {package!r}: over the limit of "
                f"{self.limiter.rate:g} reports per second",
                retry_after=self.limiter.retry_after(device.device_id),
            )
        stored = await self._writer.apply(
            device.device_id,
            functools.partial(
                ota_reports.add_report_in,
                project_id=device.project_id,
                device_id=device.device_id,
                package=package,
                **fields,
            ),
        )
        level = logging.DEBUG
        if stored.reason in _FAILURE_REASONS:
            level = logging.WARNING
        elif stored.reason == ComponentReason.FIRMWARE_UPDATED_SUCCESSFULLY:
            level = logging.INFO
        log.log(
            level,
            "component state project=%s device=%s package=%s state=%s reason=%s "
            "current=%s target=%s",
            device.project_id,
            device.device_id,
            package,
            stored.state_name,
            stored.reason_name,
            stored.current_version or "-",
            stored.target_version or "-",
        )
        return CoapResponse(Code.CHANGED)


def _report_fields(report: Any, package: str) -> dict[str, Any]:
    """Check a decoded report against the SDK's shape; raise InvalidInput."""
    if not isinstance(report, dict):
        raise InvalidInput(
            f"cannot store report of {package!r}: the body must be a map "
            "with s, r and pkg"
        )
    state = report.get("s")
    if isinstance(state, bool) or state not in set(ComponentState):
        raise InvalidInput(
            f"cannot store report of {package!r}: s must be a state from 0 to "
            f"{max(ComponentState)}, not {state!r}"
        )
    reason = report.get("r")
    if isinstance(reason, bool) or reason not in set(ComponentReason):
        raise InvalidInput(
            f"cannot store report of {package!r}: r must be a reason from 0 to "
            f"{max(ComponentReason)}, not {reason!r}"
        )
    named = report.get("pkg", package)
    if named != package:
        raise InvalidInput(
            f"cannot store report: pkg {named!r} differs from the package "
            f"{package!r} in the path"
        )
    return {
        "state": int(state),
        "reason": int(reason),
        "current_version": _version(report, "v", package),
        "target_version": _version(report, "t", package),
    }


def _version(report: dict[str, Any], key: str, package: str) -> str | None:
    value = report.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(
            f"cannot store report of {package!r}: {key} must be a version "
            f"string, not {value!r}"
        )
    try:
        return ota_artifacts.validate_version(value)
    except InvalidInput as exc:
        raise InvalidInput(
            f"cannot store report of {package!r}: {exc.message}"
        ) from exc


def _component(artifact: ArtifactRecord) -> dict[int, Any]:
    return {
        1: artifact.package,
        2: artifact.version,
        3: artifact.sha256,
        4: artifact.size,
        5: artifact.uri,
        6: artifact.bootloader,
    }


def _named(manifest: ota_releases.DesiredManifest) -> dict[str, Any]:
    return {
        "sequenceNumber": manifest.sequence,
        "hash": manifest.digest,
        "components": [
            {
                "package": item.package,
                "version": item.version,
                "hash": item.sha256,
                "size": item.size,
                "uri": item.uri,
                "bootloader": item.bootloader,
            }
            for item in manifest.components
        ],
    }


def _not_allowed(request: CoapRequest, allowed: str) -> CoapResponse:
    return CoapResponse.diagnostic(
        Code.METHOD_NOT_ALLOWED,
        f"{request.method.name} is not allowed on /{'/'.join(request.path)}, "
        f"use {allowed}",
    )
