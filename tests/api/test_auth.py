"""API keys on every request: missing, invalid, revoked, scoped to a project."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fleetgate.store import apikeys
from fleetgate.store.database import Database


def test_missing_key_is_401(client: TestClient) -> None:
    response = client.get("/v1/projects")
    assert response.status_code == 401
    assert response.json()["code"] == "missing_api_key"
    assert "x-api-key" in response.json()["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("nonsense", id="fail/shape"),
        pytest.param("fgk_" + "x" * 43, id="fail/unknown"),
    ],
)
def test_invalid_key_is_401(client: TestClient, key: str) -> None:
    response = client.get("/v1/projects", headers={"x-api-key": key})
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
    assert key not in response.text


def test_revoked_key_is_401(
    client: TestClient, database: Database, acme_key: apikeys.IssuedApiKey
) -> None:
    apikeys.revoke_api_key(database, "acme", acme_key.record.id, actor="test")
    response = client.get("/v1/projects", headers={"x-api-key": acme_key.secret})
    assert response.status_code == 401
    assert response.json()["code"] == "revoked_api_key"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_bearer_header_is_accepted(
    client: TestClient, acme_key: apikeys.IssuedApiKey, scheme: str
) -> None:
    headers = {"Authorization": f"{scheme} {acme_key.secret}"}
    response = client.get("/v1/projects/acme", headers=headers)
    assert response.status_code == 200
    assert response.json()["data"]["id"] == "acme"


def test_x_api_key_wins_over_bearer(
    client: TestClient, acme_key: apikeys.IssuedApiKey
) -> None:
    headers = {"x-api-key": acme_key.secret, "Authorization": "Bearer wrong"}
    assert client.get("/v1/projects/acme", headers=headers).status_code == 200


def test_other_project_is_404_like_missing(acme: TestClient) -> None:
    existing = acme.get("/v1/projects/other")
    missing = acme.get("/v1/projects/nobody")
    assert existing.status_code == 404
    assert missing.status_code == 404
    assert existing.json()["code"] == missing.json()["code"] == "not_found"
    assert existing.json()["message"] == "cannot find project 'other'"


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v1/projects/other/devices"),
        ("POST", "/v1/projects/other/devices"),
        ("GET", "/v1/projects/other/certificates"),
        ("POST", "/v1/projects/other/certificates"),
        ("GET", "/v1/projects/other/audit"),
        ("GET", "/v1/projects/other/devices/x/data"),
        ("PUT", "/v1/projects/other/devices/x/data/a"),
        ("DELETE", "/v1/projects/other/devices/x/data/a"),
    ],
)
def test_project_key_cannot_reach_other_project(
    acme: TestClient, method: str, path: str
) -> None:
    response = acme.request(method, path, json={"name": "x"})
    assert response.status_code == 404
    assert response.json() == {
        "code": "not_found",
        "message": "cannot find project 'other'",
    }


def test_project_key_lists_only_its_project(acme: TestClient) -> None:
    body = acme.get("/v1/projects").json()
    assert [project["id"] for project in body["list"]] == ["acme"]
    assert body["total"] == 1


def test_admin_key_lists_every_project(admin: TestClient) -> None:
    body = admin.get("/v1/projects").json()
    assert [project["id"] for project in body["list"]] == ["acme", "other"]


def test_project_key_cannot_create_project(acme: TestClient) -> None:
    response = acme.post("/v1/projects", json={"id": "new"})
    assert response.status_code == 403
    assert response.json()["code"] == "admin_key_required"


def test_admin_key_reaches_any_project(admin: TestClient) -> None:
    assert admin.get("/v1/projects/other/devices").status_code == 200
    assert admin.get("/v1/projects/nobody/devices").status_code == 404


def test_use_updates_last_used(
    acme: TestClient, database: Database, acme_key: apikeys.IssuedApiKey
) -> None:
    assert acme_key.record.last_used_at is None
    acme.get("/v1/projects")
    [key] = apikeys.list_api_keys(database, "acme")
    assert key.last_used_at is not None


def test_key_is_never_logged(
    client: TestClient,
    acme_key: apikeys.IssuedApiKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    client.get("/v1/projects", headers={"x-api-key": acme_key.secret})
    client.get("/v1/projects", headers={"x-api-key": acme_key.secret + "x"})
    assert acme_key.secret not in caplog.text
    assert acme_key.record.prefix not in caplog.text
