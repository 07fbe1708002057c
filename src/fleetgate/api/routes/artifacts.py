"""``/v1/projects/{id}/artifacts``: firmware images for OTA releases.

An upload sends the image either as the raw body, with Content-Type
``application/octet-stream`` and ``package`` and ``version`` as query
parameters, or as JSON ``{"package", "version", "content"}`` with the
image in standard base64. The server computes the size and SHA-256.
An image over the configured maximum (16 MiB by default) gets 413
``payload_too_large``, and a package version that exists gets 409
``conflict``. Deleting an artifact that a release contains gets 409
``artifact_in_use``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.errors import describe_problem
from fleetgate.api.paging import DEFAULT_PER_PAGE, PageQuery, PerPageQuery, page_of
from fleetgate.api.routes.certificates import decode_base64
from fleetgate.api.schemas import ApiModel, Empty, One, Page
from fleetgate.errors import InvalidInput
from fleetgate.store import ota_artifacts
from fleetgate.store.ota_artifacts import DEFAULT_BOOTLOADER, ArtifactRecord

router = APIRouter(prefix="/v1/projects/{project_id}/artifacts", tags=["ota"])

# The upload route, for the larger body limit it needs.
UPLOAD_PATH = re.compile(r"/v1/projects/[^/]+/artifacts/?")


def upload_body_limit(max_artifact_bytes: int) -> int:
    """Return the largest upload body: the image in base64 plus the JSON around it."""
    return (max_artifact_bytes + 2) // 3 * 4 + 64 * 1024


class Artifact(ApiModel):
    """A firmware image of one package version, and where devices fetch it."""

    id: str
    package: str
    version: str
    bootloader: str
    size: int
    sha256: str
    uri: str
    created_at: dt.datetime

    @classmethod
    def of(cls, record: ArtifactRecord) -> Artifact:
        """Render a stored artifact."""
        return cls(
            id=record.id,
            package=record.package,
            version=record.version,
            bootloader=record.bootloader,
            size=record.size,
            sha256=record.sha256,
            uri=record.uri,
            created_at=record.created_at,
        )


class ArtifactUpload(ApiModel):
    """A JSON upload: the image in standard base64."""

    package: str
    version: str
    content: str
    bootloader: str = DEFAULT_BOOTLOADER


OptionalText = Annotated[str | None, Query()]


@router.post("", summary="Upload a firmware artifact")
async def upload_artifact(
    request: Request,
    context: ContextDep,
    scope: ScopeDep,
    package: OptionalText = None,
    version: OptionalText = None,
    bootloader: Annotated[str, Query()] = DEFAULT_BOOTLOADER,
) -> One[Artifact]:
    """Store an image sent raw or as base64 JSON; size and hash are computed."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type == "application/octet-stream":
        if package is None or version is None:
            raise InvalidInput(
                "cannot store artifact: a raw upload needs the package and "
                "version query parameters"
            )
        content = body
    else:
        upload = _parse_upload(body)
        package, version = upload.package, upload.version
        bootloader = upload.bootloader
        content = decode_base64(
            upload.content, field="content", encoded="the firmware image"
        )

    record = await asyncio.to_thread(
        ota_artifacts.upload_artifact,
        context.db,
        scope.project_id,
        package,
        version,
        content,
        bootloader=bootloader,
        max_bytes=context.max_artifact_bytes,
        actor=scope.caller.actor,
    )
    return One[Artifact](data=Artifact.of(record))


@router.get("", summary="List a project's firmware artifacts")
def list_artifacts(
    context: ContextDep,
    scope: ScopeDep,
    package: Annotated[
        str | None, Query(description="Only artifacts of this package.")
    ] = None,
    page: PageQuery = 0,
    per_page: PerPageQuery = DEFAULT_PER_PAGE,
) -> Page[Artifact]:
    """Return one page of artifacts by package, newest version first."""
    records = ota_artifacts.list_artifacts(
        context.db, scope.project_id, package=package
    )
    return Page[Artifact](
        items=[Artifact.of(record) for record in page_of(records, page, per_page)],
        page=page,
        per_page=per_page,
        total=len(records),
    )


@router.get("/{artifact_id}", summary="Get a firmware artifact")
def get_artifact(
    artifact_id: str, context: ContextDep, scope: ScopeDep
) -> One[Artifact]:
    """Return one artifact's package, version, size and SHA-256."""
    record = ota_artifacts.get_artifact(context.db, scope.project_id, artifact_id)
    return One[Artifact](data=Artifact.of(record))


@router.delete("/{artifact_id}", summary="Delete a firmware artifact")
def delete_artifact(artifact_id: str, context: ContextDep, scope: ScopeDep) -> Empty:
    """Delete an artifact that no release contains."""
    ota_artifacts.delete_artifact(
        context.db, scope.project_id, artifact_id, actor=scope.caller.actor
    )
    return Empty()


def _parse_upload(body: bytes) -> ArtifactUpload:
    try:
        return ArtifactUpload.model_validate(json.loads(body))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(
            "cannot store artifact: send JSON with package, version and "
            "base64 content, or the raw image as application/octet-stream"
        ) from exc
    except ValidationError as exc:
        problems = "; ".join(describe_problem(error) for error in exc.errors())
        raise InvalidInput(f"cannot store artifact: {problems}") from exc
