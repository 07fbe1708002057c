"""PKI provider status and a device's issued certificates over the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient

from fleetgate.pki import tools
from fleetgate.pki.csr import DeviceIdentity
from fleetgate.providers.local import LocalProvider, generate_ca
from fleetgate.providers.sync import sync_project
from fleetgate.rotation import rotate
from fleetgate.store import pki_providers
from fleetgate.store.database import Database
from fleetgate.store.devices import create_device


def test_unconfigured_provider_is_offline(acme: TestClient) -> None:
    response = acme.get("/v1/projects/acme/pki-provider")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["kind"] == "offline"
    assert data["maxRotationsPerHour"] == 10


def test_other_project_is_not_found(acme: TestClient) -> None:
    response = acme.get("/v1/projects/other/pki-provider")
    assert response.status_code == 404


@pytest.fixture
def rotated(database: Database, tmp_path: Path) -> tuple[str, str]:
    key_path, cert_path = generate_ca(tmp_path / "ca", "acme")
    provider = LocalProvider(key_path, cert_path, days=30)
    pki_providers.set_provider_config(
        database, "acme", "local", provider.public_settings(), status="configured"
    )
    sync_project(database, "acme")
    device = create_device(database, "acme", "dev-1", certificate_id="dev-1")
    csr = tools.make_device_csr(tools.make_device_key(), "acme", "dev-1")
    rotation = rotate(
        database,
        DeviceIdentity("acme", "dev-1", device.id),
        csr.public_bytes(Encoding.DER),
    )
    return device.id, rotation.record.fingerprint


def test_device_certificates_are_listed(
    acme: TestClient, rotated: tuple[str, str]
) -> None:
    device_id, fingerprint = rotated

    response = acme.get(f"/v1/projects/acme/devices/{device_id}/certificates")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 1
    assert body["list"][0]["fingerprint"] == fingerprint
    assert body["list"][0]["provider"] == "local"


def test_local_provider_status_is_shown(
    acme: TestClient, rotated: tuple[str, str]
) -> None:
    data = acme.get("/v1/projects/acme/pki-provider").json()["data"]
    assert data["kind"] == "local"
    assert data["status"] == "connected"
    assert data["caCount"] == 1
    assert set(data["settings"]) == {"ca_key", "ca_cert", "days"}


def test_unknown_device_is_not_found(acme: TestClient) -> None:
    response = acme.get("/v1/projects/acme/devices/nope/certificates")
    assert response.status_code == 404
