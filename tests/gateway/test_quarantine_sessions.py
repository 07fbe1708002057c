"""A quarantine through the API closes live DTLS sessions; release restores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiocoap.numbers.codes import Code
from fastapi.testclient import TestClient

from fleetgate.api.app import create_app
from fleetgate.client.errors import SessionClosed
from fleetgate.pki.identity import fingerprint
from fleetgate.store import apikeys, devices
from fleetgate.store.database import Database

from .conftest import FleetPki, GatewayThread, connect


@pytest.fixture
def api(
    database: Database, gateway: GatewayThread, pki: FleetPki
) -> Iterator[TestClient]:
    app = create_app(database, close_sessions=gateway.gateway.close_device_sessions)
    key = apikeys.create_api_key(database, pki.project, actor="test")
    with TestClient(app, headers={"x-api-key": key.secret}) as client:
        yield client


def test_quarantine_by_intermediate_closes_session(
    api: TestClient, gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    # Sent by the device, not registered: the recorded chain still has it.
    intermediate = pki.intermediate()
    quarantined = pki.device("sensor-1", issuer=intermediate, send=(intermediate,))
    spared = pki.device("sensor-2")
    path = f"/v1/projects/{pki.project}/quarantines"

    with connect(gateway, quarantined) as victim, connect(gateway, spared) as other:
        assert victim.request("GET", ".d").code is Code.CONTENT
        assert other.request("GET", ".d").code is Code.CONTENT

        started = api.post(
            path, json={"caFingerprint": fingerprint(intermediate.certificate)}
        )

        assert started.status_code == 200, started.text
        assert started.json()["data"]["sessionsClosed"] == 1
        with pytest.raises(SessionClosed) as closed:
            victim.request("GET", ".d")
        assert closed.value.alert == "close_notify"
        assert other.request("GET", ".d").code is Code.CONTENT

    quarantine_id = started.json()["data"]["id"]
    released = api.post(f"{path}/{quarantine_id}/release")
    enabled = {
        d.name: d.enabled for d in devices.list_devices(database, pki.project).items
    }

    assert released.json()["data"]["deviceIds"] == started.json()["data"]["deviceIds"]
    assert enabled == {"sensor-1": True, "sensor-2": True}
    with connect(gateway, quarantined) as again:
        assert again.request("GET", ".d").code is Code.CONTENT


def test_quarantined_device_cannot_reconnect(
    api: TestClient, gateway: GatewayThread, pki: FleetPki
) -> None:
    intermediate = pki.intermediate()
    pki.register(intermediate)
    device = pki.device("sensor-1", issuer=intermediate)
    with connect(gateway, device) as client:
        assert client.request("GET", ".d").code is Code.CONTENT
    api.post(
        f"/v1/projects/{pki.project}/quarantines",
        json={"caFingerprint": fingerprint(intermediate.certificate)},
    )

    with connect(gateway, device) as client:
        reply = client.request("GET", ".d")

    assert reply.code is Code.FORBIDDEN
    assert b"disabled" in reply.payload


def test_unknown_ca_fingerprint_is_not_found(
    api: TestClient, gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    with connect(gateway, pki.device("sensor-1")) as client:
        assert client.request("GET", ".d").code is Code.CONTENT

    response = api.post(
        f"/v1/projects/{pki.project}/quarantines", json={"caFingerprint": "0" * 64}
    )
    listed = api.get(f"/v1/projects/{pki.project}/quarantines")

    assert response.status_code == 404, response.text
    assert "no registered CA certificate" in response.json()["message"]
    assert listed.json()["list"] == []
    assert devices.list_devices(database, pki.project).items[0].enabled
