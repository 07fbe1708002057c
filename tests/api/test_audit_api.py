"""``/v1/projects/{id}/audit``: API and CLI changes, newest first."""

from __future__ import annotations

from fastapi.testclient import TestClient

from fleetgate.store import apikeys, devices
from fleetgate.store.database import Database


def test_api_changes_name_the_key(
    acme: TestClient, acme_key: apikeys.IssuedApiKey, database: Database
) -> None:
    device_id = acme.post("/v1/projects/acme/devices", json={"name": "pump-1"}).json()[
        "data"
    ]["id"]
    acme.patch(f"/v1/projects/acme/devices/{device_id}", json={"enabled": False})
    acme.put(f"/v1/projects/acme/devices/{device_id}/data/a", json=1)
    devices.create_device(database, "acme", "pump-2", actor="cli")

    body = acme.get("/v1/projects/acme/audit").json()
    entries = body["list"]
    assert [entry["action"] for entry in entries] == [
        "device.create",
        "state.set",
        "device.update",
        "device.create",
        "apikey.create",
    ]
    actors = [entry["actor"] for entry in entries]
    assert actors == ["cli", *[acme_key.record.id] * 3, "test"]
    assert entries[2]["details"] == {"changed": ["enabled"], "enabled": False}
    assert entries[2]["targetType"] == "device"
    assert entries[2]["targetId"] == device_id
    assert body["total"] == 5


def test_reads_are_not_audited(acme: TestClient) -> None:
    acme.get("/v1/projects/acme/devices")
    entries = acme.get("/v1/projects/acme/audit").json()["list"]
    assert [entry["action"] for entry in entries] == ["apikey.create"]


def test_audit_pages(acme: TestClient) -> None:
    for index in range(3):
        acme.post("/v1/projects/acme/devices", json={"name": f"p{index}"})
    body = acme.get("/v1/projects/acme/audit", params={"perPage": 2, "page": 1}).json()
    # The oldest entry is the creation of the key that made the requests.
    assert [entry["details"]["name"] for entry in body["list"]] == ["p0", "acme"]
    assert (body["page"], body["perPage"], body["total"]) == (1, 2, 4)


def test_other_projects_audit_is_404(acme: TestClient) -> None:
    assert acme.get("/v1/projects/other/audit").status_code == 404
