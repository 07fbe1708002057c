"""``/v1/projects/{id}/manifests``: manufacturing manifests of a project.

``POST .../manifests?batch=NAME`` imports a CSV (``text/csv``) or JSON
(``application/json``) body of expected certificate IDs, all or nothing:
a body with a bad row is 400 and names every bad row. ``GET`` lists the
batches, ``DELETE .../manifests/{batch}`` removes one, and ``GET
.../manifests/report`` compares the manifest with the devices that
connected. ``PUT .../manifests/requirement`` turns ``requireManifest``
on or off: zero-touch provisioning then creates devices only for
listed certificate IDs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.schemas import ApiModel, Empty, One, Page
from fleetgate.store import manifests

router = APIRouter(prefix="/v1/projects/{project_id}/manifests", tags=["manifests"])

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array"}},
        },
    }
}


class Batch(ApiModel):
    """A batch of the manifest and how many certificate IDs it lists."""

    batch: str
    entries: int
    imported_at: dt.datetime

    @classmethod
    def of(cls, summary: manifests.BatchSummary) -> Batch:
        """Render a stored batch."""
        return cls(
            batch=summary.batch,
            entries=summary.entries,
            imported_at=summary.imported_at,
        )


class MissingEntry(ApiModel):
    """A manifest entry that no device has connected with."""

    batch: str
    certificate_id: str


class CloneSuspect(ApiModel):
    """A certificate ID seen from two network addresses at the same time."""

    certificate_id: str
    device_id: str | None
    addresses: list[str]
    detected_at: dt.datetime


class ManifestReport(ApiModel):
    """Devices outside the manifest, entries never seen, and clone suspects."""

    unlisted: list[str]
    never_seen: list[MissingEntry]
    clone_suspects: list[CloneSuspect]


class Requirement(ApiModel):
    """Whether zero-touch provisioning accepts only listed certificate IDs."""

    require_manifest: bool


@router.post("", summary="Import a manifest batch", openapi_extra=_BODY)
async def import_manifest(
    request: Request,
    context: ContextDep,
    scope: ScopeDep,
    batch: Annotated[
        str | None,
        Query(description="Batch of rows without a batch column; rows must match."),
    ] = None,
) -> Page[Batch]:
    """Import every row or none, and return the batches the import touched."""
    json_format = "json" in request.headers.get("content-type", "")
    rows = manifests.parse_manifest(
        await request.body(), batch=batch, json_format=json_format or None
    )
    summaries = await asyncio.to_thread(
        manifests.import_manifest,
        context.db,
        scope.project_id,
        rows,
        actor=scope.caller.actor,
    )
    return _page(summaries)


@router.get("", summary="List manifest batches")
def list_batches(context: ContextDep, scope: ScopeDep) -> Page[Batch]:
    """Return every batch of the project, ordered by name."""
    return _page(manifests.list_batches(context.db, scope.project_id))


@router.get("/report", summary="Compare the manifest with connected devices")
def report(context: ContextDep, scope: ScopeDep) -> One[ManifestReport]:
    """Return unlisted devices, entries never seen, and clone suspects."""
    result = manifests.manifest_report(context.db, scope.project_id)
    return One(
        data=ManifestReport(
            unlisted=result.unlisted,
            never_seen=[
                MissingEntry(batch=batch, certificate_id=certificate_id)
                for batch, certificate_id in result.never_seen
            ],
            clone_suspects=[
                CloneSuspect(
                    certificate_id=suspect.certificate_id,
                    device_id=suspect.device_id,
                    addresses=list(suspect.addresses),
                    detected_at=suspect.detected_at,
                )
                for suspect in result.clone_suspects
            ],
        )
    )


@router.get("/requirement", summary="Tell whether devices must be listed")
def get_requirement(context: ContextDep, scope: ScopeDep) -> One[Requirement]:
    """Return the project's requireManifest flag."""
    required = manifests.require_manifest(context.db, scope.project_id)
    return One(data=Requirement(require_manifest=required))


@router.put("/requirement", summary="Require new devices to be listed")
def set_requirement(
    body: Requirement, context: ContextDep, scope: ScopeDep
) -> One[Requirement]:
    """Turn requireManifest on or off; existing devices keep working."""
    manifests.set_require_manifest(
        context.db, scope.project_id, body.require_manifest, actor=scope.caller.actor
    )
    return One(data=body)


@router.delete("/{batch}", summary="Delete a manifest batch")
def delete_batch(batch: str, context: ContextDep, scope: ScopeDep) -> Empty:
    """Delete every entry of the batch; devices are left as they are."""
    manifests.delete_batch(
        context.db, scope.project_id, batch, actor=scope.caller.actor
    )
    return Empty()


def _page(summaries: list[manifests.BatchSummary]) -> Page[Batch]:
    return Page[Batch](
        items=[Batch.of(summary) for summary in summaries],
        page=0,
        per_page=max(len(summaries), 1),
        total=len(summaries),
    )
