"""``/v1/projects``: list with paging, get, create with an admin key."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def test_create_with_id(admin: TestClient) -> None:
    response = admin.post(
        "/v1/projects", json={"id": "fleet-1", "name": "Fleet", "requireV3": True}
    )
    data = response.json()["data"]
    assert response.status_code == 200
    assert data["id"] == "fleet-1"
    assert data["name"] == "Fleet"
    assert data["requireV3"] is True
    assert data["createdAt"].endswith("Z")
    assert admin.get("/v1/projects/fleet-1").json()["data"] == data


def test_create_from_name_only(admin: TestClient) -> None:
    response = admin.post("/v1/projects", json={"name": "ACME Sensors (EU)"})
    assert response.status_code == 200
    assert response.json()["data"]["id"] == "acme-sensors-eu"


@pytest.mark.parametrize(
    "body, status, code",
    [
        pytest.param({"id": "acme"}, 409, "conflict", id="fail/taken"),
        pytest.param({"id": "Bad ID"}, 400, "invalid_input", id="fail/bad-id"),
        pytest.param({}, 400, "invalid_input", id="fail/no-id-no-name"),
        pytest.param({"name": "!!!"}, 400, "invalid_input", id="fail/name-no-slug"),
        pytest.param({"requireV3": "maybe"}, 422, "invalid_request", id="fail/type"),
    ],
)
def test_create_errors(
    admin: TestClient, body: dict[str, object], status: int, code: str
) -> None:
    response = admin.post("/v1/projects", json=body)
    assert response.status_code == status
    assert response.json()["code"] == code


def test_list_pages_from_zero(admin: TestClient) -> None:
    for index in range(3):
        admin.post("/v1/projects", json={"id": f"p-{index}"})
    body = admin.get("/v1/projects", params={"page": 1, "perPage": 2}).json()
    assert [project["id"] for project in body["list"]] == ["p-0", "p-1"]
    assert (body["page"], body["perPage"], body["total"]) == (1, 2, 5)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"page": -1}, id="fail/negative-page"),
        pytest.param({"perPage": 0}, id="fail/zero-per-page"),
        pytest.param({"perPage": 1001}, id="fail/huge-per-page"),
        pytest.param({"page": "x"}, id="fail/not-number"),
    ],
)
def test_bad_paging_is_422(admin: TestClient, params: dict[str, object]) -> None:
    response = admin.get("/v1/projects", params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert "query" in response.json()["message"]


def test_unknown_project_is_404(admin: TestClient) -> None:
    response = admin.get("/v1/projects/nobody")
    assert response.status_code == 404
    assert response.json()["message"] == "cannot find project 'nobody'"
