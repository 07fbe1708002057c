"""``/v1/projects/{id}/settings`` and ``.../devices/{id}/settings``.

Project settings apply to every device of the project, and a device's
settings override single keys for that device alone. ``PUT`` replaces
the whole set with the body's ``settings`` object, so a key missing from
it is removed. Values are integers (32-bit), floats, booleans or
strings. Devices observing ``.c`` over CoAP through this process are
notified of every change.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ApiContext, ContextDep
from fleetgate.api.schemas import ApiModel, Empty, One
from fleetgate.store import settings as settings_store

router = APIRouter(prefix="/v1/projects/{project_id}", tags=["settings"])


class SettingsBody(ApiModel):
    """A complete set of settings: key to integer, float, boolean or string."""

    settings: dict[str, Any]


class ProjectSettings(ApiModel):
    """A project's settings and the version of their latest change."""

    settings: dict[str, Any]
    version: int


class DeviceSettings(ApiModel):
    """A device's effective settings, its overrides, and their version."""

    settings: dict[str, Any]
    overrides: dict[str, Any]
    version: int


@router.get("/settings", summary="Read a project's settings")
async def read_project_settings(
    context: ContextDep, scope: ScopeDep
) -> One[ProjectSettings]:
    """Return the project's settings; the version is milliseconds since 1970."""
    record = await asyncio.to_thread(
        settings_store.get_project_settings, context.db, scope.project_id
    )
    return One(data=ProjectSettings(settings=record.settings, version=record.version))


@router.put("/settings", summary="Replace a project's settings")
async def replace_project_settings(
    body: SettingsBody, context: ContextDep, scope: ScopeDep
) -> One[ProjectSettings]:
    """Replace every project setting with the body's and return the result."""
    record = await asyncio.to_thread(
        settings_store.replace_project_settings,
        context.db,
        scope.project_id,
        body.settings,
        actor=scope.caller.actor,
    )
    return One(data=ProjectSettings(settings=record.settings, version=record.version))


@router.get("/devices/{device_id}/settings", summary="Read a device's settings")
async def read_device_settings(
    device_id: str, context: ContextDep, scope: ScopeDep
) -> One[DeviceSettings]:
    """Return the device's effective settings and its own overrides."""
    return One(data=await _device_settings(context, scope.project_id, device_id))


@router.put(
    "/devices/{device_id}/settings", summary="Replace a device's setting overrides"
)
async def replace_device_settings(
    device_id: str, body: SettingsBody, context: ContextDep, scope: ScopeDep
) -> One[DeviceSettings]:
    """Replace the device's overrides with the body's and return the result."""
    await asyncio.to_thread(
        settings_store.replace_device_settings,
        context.db,
        scope.project_id,
        device_id,
        body.settings,
        actor=scope.caller.actor,
    )
    return One(data=await _device_settings(context, scope.project_id, device_id))


@router.delete(
    "/devices/{device_id}/settings", summary="Remove a device's setting overrides"
)
async def delete_device_settings(
    device_id: str, context: ContextDep, scope: ScopeDep
) -> Empty:
    """Remove the device's overrides, so the project's settings apply."""
    await asyncio.to_thread(
        settings_store.delete_device_settings,
        context.db,
        scope.project_id,
        device_id,
        actor=scope.caller.actor,
    )
    return Empty()


async def _device_settings(
    context: ApiContext, project_id: str, device_id: str
) -> DeviceSettings:
    record = await asyncio.to_thread(
        settings_store.get_device_settings, context.db, project_id, device_id
    )
    return DeviceSettings(
        settings=record.settings, overrides=record.overrides, version=record.version
    )
