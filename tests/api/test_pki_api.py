"""PKI provider status and a device's issued certificates over the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient

from fleetgate.pki import tools
from fleetgate.pki.csr import DeviceIdentity
from fleetgate.pki.identity import fingerprint
from fleetgate.providers.local import LocalProvider, generate_ca
from fleetgate.providers.sync import sync_project
from fleetgate.rotation import rotate
from fleetgate.store import apikeys, audit, pki_providers
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


def audit_actions(database: Database, actor: str) -> list[str]:
    """Return the audit actions of ``actor`` in project acme, oldest first."""
    entries = audit.list_audit_entries(database, "acme").items
    return [entry.action for entry in reversed(entries) if entry.actor == actor]


@pytest.fixture
def root_files(tmp_path: Path) -> tuple[Path, Path, str]:
    """Write a root CA made by fleetgate.pki.tools; return paths and fingerprint."""
    key, certificate = tools.make_root("Acme Lab Root")
    key_path = tmp_path / "root.key"
    cert_path = tmp_path / "root.pem"
    tools.write_private_key(key_path, key)
    tools.write_certificate(cert_path, certificate)
    return key_path, cert_path, fingerprint(certificate)


def test_set_offline_provider(
    acme: TestClient,
    acme_key: apikeys.IssuedApiKey,
    database: Database,
) -> None:
    response = acme.put("/v1/projects/acme/pki-provider", json={"kind": "offline"})

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["kind"] == "offline"
    assert data["status"] == "offline"
    assert data["settings"] == {}
    assert audit_actions(database, acme_key.record.id) == ["provider.set"]


def test_set_local_provider_registers_ca(
    acme: TestClient,
    acme_key: apikeys.IssuedApiKey,
    database: Database,
    trust_changes: list[str],
    root_files: tuple[Path, Path, str],
) -> None:
    key_path, cert_path, root_fingerprint = root_files

    response = acme.put(
        "/v1/projects/acme/pki-provider",
        json={
            "kind": "local",
            "settings": {"ca_key": str(key_path), "caCert": str(cert_path)},
            "maxRotationsPerHour": 3,
        },
    )

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["kind"] == "local"
    assert data["status"] == "connected"
    assert data["caCount"] == 1
    assert data["maxRotationsPerHour"] == 3
    assert data["settings"]["ca_cert"] == str(cert_path.resolve())
    assert data == acme.get("/v1/projects/acme/pki-provider").json()["data"]

    listed = acme.get("/v1/projects/acme/certificates").json()["list"]
    assert [ca["fingerprint"] for ca in listed] == [root_fingerprint]
    assert trust_changes == ["acme"]
    assert audit_actions(database, acme_key.record.id) == [
        "provider.set",
        "ca.create",
        "provider.sync",
    ]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"kind": "hsm"}, 422),
        ({"settings": {}}, 422),
        ({"kind": "local", "settings": {"days": 0}}, 422),
        ({"kind": "local", "settings": {"ca_cert": "/tmp/ca.pem"}}, 400),
        ({"kind": "local", "settings": {"ca_key": "k", "ca_cert": "c"}}, 400),
        ({"kind": "offline", "settings": {"region": "eu-west-1"}}, 400),
        ({"kind": "aws-pca", "settings": {"region": "eu-west-1"}}, 400),
        (
            {
                "kind": "aws-pca",
                "settings": {
                    "region": "eu-west-1",
                    "caArn": "arn:aws:acm-pca:eu-west-1:1:certificate-authority/x",
                    "credentialsFile": "/nonexistent/acme-aws.json",
                },
            },
            400,
        ),
    ],
)
def test_set_provider_rejects_invalid_body(
    acme: TestClient, body: dict[str, object], status: int
) -> None:
    response = acme.put("/v1/projects/acme/pki-provider", json=body)

    assert response.status_code == status, response.text
    assert set(response.json()) == {"code", "message"}
    stored = acme.get("/v1/projects/acme/pki-provider").json()["data"]
    assert stored["kind"] == "offline"


def test_set_provider_rejects_secret_key(acme: TestClient) -> None:
    secret = "wJalrXUtnFEMI-example-secret"
    response = acme.put(
        "/v1/projects/acme/pki-provider",
        json={
            "kind": "aws-pca",
            "settings": {
                "region": "eu-west-1",
                "caArn": "arn:aws:acm-pca:eu-west-1:1:certificate-authority/x",
                "secretAccessKey": secret,
            },
        },
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"
    assert "secretAccessKey" in response.json()["message"]
    assert secret not in response.text


def test_set_provider_of_other_project(acme: TestClient, database: Database) -> None:
    response = acme.put("/v1/projects/other/pki-provider", json={"kind": "offline"})
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "not_found"

    response = acme.post("/v1/projects/other/pki-provider/sync")
    assert response.status_code == 404, response.text
    assert pki_providers.get_provider_config(database, "other").updated_at is None


def test_sync_registers_new_ca(
    acme: TestClient,
    acme_key: apikeys.IssuedApiKey,
    database: Database,
    trust_changes: list[str],
    root_files: tuple[Path, Path, str],
) -> None:
    key_path, cert_path, root_fingerprint = root_files
    provider = LocalProvider(key_path, cert_path, days=30)
    pki_providers.set_provider_config(
        database, "acme", "local", provider.public_settings(), status="configured"
    )

    response = acme.post("/v1/projects/acme/pki-provider/sync")

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "connected"
    assert data["caCount"] == 1
    assert data["lastSyncAt"] is not None
    listed = acme.get("/v1/projects/acme/certificates").json()["list"]
    assert [ca["fingerprint"] for ca in listed] == [root_fingerprint]
    assert trust_changes == ["acme"]
    assert audit_actions(database, acme_key.record.id) == ["ca.create", "provider.sync"]


def test_sync_failure_is_stored(
    acme: TestClient,
    database: Database,
    root_files: tuple[Path, Path, str],
) -> None:
    key_path, cert_path, _ = root_files
    provider = LocalProvider(key_path, cert_path, days=30)
    pki_providers.set_provider_config(
        database, "acme", "local", provider.public_settings(), status="configured"
    )
    cert_path.unlink()

    response = acme.post("/v1/projects/acme/pki-provider/sync")

    assert response.status_code == 502, response.text
    assert response.json()["code"] == "provider_failed"
    stored = acme.get("/v1/projects/acme/pki-provider").json()["data"]
    assert stored["status"] == "error"
    assert str(cert_path) in stored["error"]


def test_sync_of_offline_provider(acme: TestClient) -> None:
    response = acme.post("/v1/projects/acme/pki-provider/sync")

    assert response.status_code == 200, response.text
    assert response.json()["data"]["kind"] == "offline"
