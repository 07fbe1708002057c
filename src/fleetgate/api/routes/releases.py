"""OTA releases and each device's firmware state.

- ``/v1/projects/{id}/releases``: create a release from artifact IDs, one
  per package; list, get and delete releases (409 ``conflict`` while a
  release is rolled out).
- ``POST .../releases/{id}/rollout`` with ``{"allDevices": true}`` or
  ``{"deviceIds": [...], "tags": [...]}`` rolls it out, replacing earlier
  targets; ``POST .../releases/{id}/rollback`` stops the rollout.
  Devices observing ``.u/desired`` through this process are notified.
- ``GET /v1/projects/{id}/devices/{deviceId}/firmware``: the manifest the
  device should run and its latest report per package; ``.../firmware/
  history`` lists every report, newest first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.paging import DEFAULT_PER_PAGE, PageQuery, PerPageQuery, page_of
from fleetgate.api.routes.artifacts import Artifact
from fleetgate.api.schemas import ApiModel, Empty, One, Page
from fleetgate.store import ota_releases, ota_reports
from fleetgate.store.ota_releases import ReleaseRecord
from fleetgate.store.ota_reports import ComponentReport

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["ota"])


class Release(ApiModel):
    """A release: its artifacts and where it is rolled out."""

    id: str
    name: str
    artifacts: list[Artifact]
    rolled_out: bool
    all_devices: bool
    device_ids: list[str]
    tags: list[str]
    sequence: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, record: ReleaseRecord) -> Release:
        """Render a stored release."""
        return cls(
            id=record.id,
            name=record.name,
            artifacts=[Artifact.of(item) for item in record.artifacts],
            rolled_out=record.rolled_out,
            all_devices=record.all_devices,
            device_ids=list(record.device_ids),
            tags=list(record.tags),
            sequence=record.sequence,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class ReleaseCreate(ApiModel):
    """A new release: a name and the IDs of its artifacts."""

    name: str
    artifact_ids: list[str]


class Rollout(ApiModel):
    """Rollout targets: every device, or listed devices and tags."""

    all_devices: bool = False
    device_ids: list[str] = []
    tags: list[str] = []


class ComponentState(ApiModel):
    """One component state report of a device."""

    package: str
    state: int
    state_name: str
    reason: int
    reason_name: str
    current_version: str | None
    target_version: str | None
    received_at: dt.datetime

    @classmethod
    def of(cls, record: ComponentReport) -> ComponentState:
        """Render a stored report."""
        return cls(
            package=record.package,
            state=record.state,
            state_name=record.state_name,
            reason=record.reason,
            reason_name=record.reason_name,
            current_version=record.current_version,
            target_version=record.target_version,
            received_at=record.received_at,
        )


class DesiredFirmware(ApiModel):
    """The manifest a device reads on ``.u/desired``."""

    sequence: int
    release_id: str | None
    hash: str
    components: list[Artifact]


class DeviceFirmware(ApiModel):
    """A device's desired manifest and its latest report of each package."""

    desired: DesiredFirmware
    components: list[ComponentState]


@router.post("/releases", summary="Create an OTA release")
def create_release(
    body: ReleaseCreate, context: ContextDep, scope: ScopeDep
) -> One[Release]:
    """Create a release of the given artifacts; it is not rolled out yet."""
    record = ota_releases.create_release(
        context.db,
        scope.project_id,
        body.name,
        body.artifact_ids,
        actor=scope.caller.actor,
    )
    return One[Release](data=Release.of(record))


@router.get("/releases", summary="List a project's OTA releases")
def list_releases(
    context: ContextDep,
    scope: ScopeDep,
    page: PageQuery = 0,
    per_page: PerPageQuery = DEFAULT_PER_PAGE,
) -> Page[Release]:
    """Return one page of releases, newest first."""
    records = ota_releases.list_releases(context.db, scope.project_id)
    return Page[Release](
        items=[Release.of(record) for record in page_of(records, page, per_page)],
        page=page,
        per_page=per_page,
        total=len(records),
    )


@router.get("/releases/{release_id}", summary="Get an OTA release")
def get_release(release_id: str, context: ContextDep, scope: ScopeDep) -> One[Release]:
    """Return one release with its artifacts and targets."""
    record = ota_releases.get_release(context.db, scope.project_id, release_id)
    return One[Release](data=Release.of(record))


@router.delete("/releases/{release_id}", summary="Delete an OTA release")
def delete_release(release_id: str, context: ContextDep, scope: ScopeDep) -> Empty:
    """Delete a release that is not rolled out; its artifacts stay."""
    ota_releases.delete_release(
        context.db, scope.project_id, release_id, actor=scope.caller.actor
    )
    return Empty()


@router.post("/releases/{release_id}/rollout", summary="Roll out an OTA release")
async def roll_out(
    release_id: str, body: Rollout, context: ContextDep, scope: ScopeDep
) -> One[Release]:
    """Roll the release out to its targets and notify observing devices."""
    record = await asyncio.to_thread(
        ota_releases.roll_out,
        context.db,
        scope.project_id,
        release_id,
        all_devices=body.all_devices,
        device_ids=body.device_ids,
        tags=body.tags,
        actor=scope.caller.actor,
    )
    return One[Release](data=Release.of(record))


@router.post("/releases/{release_id}/rollback", summary="Roll back an OTA release")
async def roll_back(
    release_id: str, context: ContextDep, scope: ScopeDep
) -> One[Release]:
    """Stop the release's rollout; its devices fall back to an earlier release."""
    record = await asyncio.to_thread(
        ota_releases.roll_back,
        context.db,
        scope.project_id,
        release_id,
        actor=scope.caller.actor,
    )
    return One[Release](data=Release.of(record))


@router.get("/devices/{device_id}/firmware", summary="Get a device's firmware state")
def device_firmware(
    device_id: str, context: ContextDep, scope: ScopeDep
) -> One[DeviceFirmware]:
    """Return the device's desired manifest and latest report per package."""
    manifest = ota_releases.desired_manifest(context.db, scope.project_id, device_id)
    reports = ota_reports.latest_reports(context.db, scope.project_id, device_id)
    desired = DesiredFirmware(
        sequence=manifest.sequence,
        release_id=manifest.release_id,
        hash=manifest.digest,
        components=[Artifact.of(item) for item in manifest.components],
    )
    return One[DeviceFirmware](
        data=DeviceFirmware(
            desired=desired,
            components=[ComponentState.of(report) for report in reports],
        )
    )


@router.get(
    "/devices/{device_id}/firmware/history",
    summary="List a device's component state reports",
)
def device_firmware_history(
    device_id: str,
    context: ContextDep,
    scope: ScopeDep,
    package: Annotated[
        str | None, Query(description="Only reports of this package.")
    ] = None,
    page: PageQuery = 0,
    per_page: PerPageQuery = DEFAULT_PER_PAGE,
) -> Page[ComponentState]:
    """Return one page of the device's reports, newest first."""
    result = ota_reports.report_history(
        context.db,
        scope.project_id,
        device_id,
        package=package,
        page=page,
        per_page=per_page,
    )
    return Page[ComponentState](
        items=[ComponentState.of(report) for report in result.items],
        page=result.page,
        per_page=result.per_page,
        total=result.total,
    )
