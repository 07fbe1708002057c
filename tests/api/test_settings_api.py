"""``/v1/projects/{id}/settings`` and per-device overrides over HTTP."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

SETTINGS = "/v1/projects/acme/settings"


@pytest.fixture
def device_settings(acme: TestClient) -> str:
    response = acme.post("/v1/projects/acme/devices", json={"name": "pump-1"})
    return f"/v1/projects/acme/devices/{response.json()['data']['id']}/settings"


def test_project_settings_start_empty(acme: TestClient) -> None:
    assert acme.get(SETTINGS).json() == {"data": {"settings": {}, "version": 0}}


def test_put_replaces_project_settings(acme: TestClient) -> None:
    acme.put(SETTINGS, json={"settings": {"A": 1, "B": "x"}})
    response = acme.put(SETTINGS, json={"settings": {"B": "y", "C": 1.5}})
    assert response.status_code == 200
    data = acme.get(SETTINGS).json()["data"]
    assert data["settings"] == {"B": "y", "C": 1.5}
    assert data["version"] == response.json()["data"]["version"]
    assert data["version"] > 0


def test_device_overrides_project(acme: TestClient, device_settings: str) -> None:
    acme.put(SETTINGS, json={"settings": {"SPEED": 10, "ON": True}})
    response = acme.put(device_settings, json={"settings": {"SPEED": 20}})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["settings"] == {"SPEED": 20, "ON": True}
    assert data["overrides"] == {"SPEED": 20}


def test_delete_removes_overrides(acme: TestClient, device_settings: str) -> None:
    acme.put(SETTINGS, json={"settings": {"SPEED": 10}})
    acme.put(device_settings, json={"settings": {"SPEED": 20}})
    assert acme.delete(device_settings).json() == {}
    data = acme.get(device_settings).json()["data"]
    assert data["settings"] == {"SPEED": 10}
    assert data["overrides"] == {}


@pytest.mark.parametrize(
    "settings",
    [
        {"bad key": 1},
        {"": 1},
        {"K" * 64: 1},
        {"NESTED": {"a": 1}},
        {"LIST": [1]},
        {"NULL": None},
        {"BIG": 2**31},
    ],
)
def test_invalid_settings_are_400(acme: TestClient, settings: object) -> None:
    response = acme.put(SETTINGS, json={"settings": settings})
    assert response.status_code == 400
    assert acme.get(SETTINGS).json()["data"]["settings"] == {}


def test_writes_are_audited(acme: TestClient, device_settings: str) -> None:
    acme.put(SETTINGS, json={"settings": {"A": 1}})
    acme.put(device_settings, json={"settings": {"A": 2}})
    acme.delete(device_settings)
    entries = acme.get("/v1/projects/acme/audit").json()["list"]
    actions = [entry["action"] for entry in entries[:3]]
    assert actions == ["settings.delete", "settings.replace", "settings.replace"]


def test_unknown_device_is_404(acme: TestClient) -> None:
    path = "/v1/projects/acme/devices/000000000000000000000000/settings"
    assert acme.get(path).status_code == 404
    assert acme.put(path, json={"settings": {}}).status_code == 404
    assert acme.delete(path).status_code == 404


def test_other_projects_device_is_404(admin: TestClient, device_settings: str) -> None:
    path = device_settings.replace("/acme/", "/other/")
    assert admin.get(path).status_code == 404
    assert admin.put(path, json={"settings": {"A": 1}}).status_code == 404


def test_other_project_is_404(acme: TestClient) -> None:
    assert acme.get("/v1/projects/other/settings").status_code == 404
