"""Disabling a device or its CA ends the device's open session."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from aiocoap.numbers.codes import Code

from fleetgate.client import DeviceClient
from fleetgate.gateway import coap
from fleetgate.store import certificates, devices
from fleetgate.store.database import Database

from .conftest import FleetPki, GatewayThread, connect

RECHECK_SECONDS = 0.2


@pytest.fixture
def device(
    gateway: GatewayThread, pki: FleetPki, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DeviceClient]:
    """A connected device whose session rechecks its standing quickly."""
    monkeypatch.setattr(coap, "REVALIDATE_SECONDS", RECHECK_SECONDS)
    client = connect(gateway, pki.device("sensor-1"))
    with client:
        assert client.request("GET", ".d").code is Code.CONTENT
        yield client


def only_device_id(db: Database, project: str) -> str:
    page = devices.list_devices(db, project)
    assert len(page.items) == 1
    return page.items[0].id


def test_disabled_device_loses_open_session(
    device: DeviceClient, database: Database, pki: FleetPki, gateway: GatewayThread
) -> None:
    devices.set_device_enabled(
        database, pki.project, only_device_id(database, pki.project), False
    )
    time.sleep(RECHECK_SECONDS * 2)

    reply = device.request("GET", ".d")

    assert reply.code is Code.FORBIDDEN
    assert b"disabled" in reply.payload
    assert gateway.session_count() == 0


def test_disabled_ca_ends_open_session(
    device: DeviceClient, database: Database, pki: FleetPki, gateway: GatewayThread
) -> None:
    (root,) = certificates.list_ca_certificates(database, pki.project)
    certificates.set_ca_certificate_enabled(database, pki.project, root.id, False)
    gateway.gateway.trust.invalidate(pki.project)
    time.sleep(RECHECK_SECONDS * 2)

    reply = device.request("GET", ".d")

    assert reply.code is Code.FORBIDDEN
    assert b"no longer enabled" in reply.payload
    assert gateway.session_count() == 0


def test_enabled_device_keeps_session(device: DeviceClient) -> None:
    time.sleep(RECHECK_SECONDS * 2)

    assert device.request("GET", ".d").code is Code.CONTENT
    assert device.request("GET", ".d").code is Code.CONTENT


def test_deleted_device_loses_open_session(
    device: DeviceClient, database: Database, pki: FleetPki, gateway: GatewayThread
) -> None:
    devices.delete_device(database, pki.project, only_device_id(database, pki.project))
    time.sleep(RECHECK_SECONDS * 2)

    reply = device.request("GET", ".d")

    assert reply.code is Code.FORBIDDEN
    assert b"deleted" in reply.payload
    assert gateway.session_count() == 0
