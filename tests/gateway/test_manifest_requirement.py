"""A project that requires a manifest turns away unlisted devices at connect."""

from __future__ import annotations

import logging

import pytest
from aiocoap.numbers.codes import Code

from fleetgate.store import devices, manifests
from fleetgate.store.database import Database

from .conftest import FleetPki, GatewayThread, connect
from .test_refusal_logging import wait_for_record


@pytest.fixture
def required(database: Database, pki: FleetPki) -> None:
    rows = manifests.parse_manifest(b"certificate_id\nsensor-1\n", batch="line-1")
    manifests.import_manifest(database, pki.project, rows, actor="test")
    manifests.set_require_manifest(database, pki.project, True, actor="test")


@pytest.mark.usefixtures("required")
def test_unlisted_device_is_refused_and_logged(
    gateway: GatewayThread,
    pki: FleetPki,
    database: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="fleetgate")

    with connect(gateway, pki.device("sensor-9")) as client:
        reply = client.request("GET", ".d")

    assert reply.code is Code.FORBIDDEN
    assert b"requires a manifest" in reply.payload
    assert wait_for_record(caplog, "reason=not_in_manifest")
    assert devices.list_devices(database, pki.project).total == 0


@pytest.mark.usefixtures("required")
def test_listed_device_is_created(
    gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    with connect(gateway, pki.device("sensor-1")) as client:
        reply = client.request("GET", ".d")

    assert reply.code is Code.CONTENT
    assert devices.list_devices(database, pki.project).total == 1
