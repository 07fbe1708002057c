"""``/v1/projects/{id}/devices``: create, list, get, change, delete."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from fleetgate.provisioning import associate
from fleetgate.store.database import Database

DEVICES = "/v1/projects/acme/devices"


def create(api: TestClient, **body: object) -> dict[str, object]:
    response = api.post(DEVICES, json=body)
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()["data"]
    return data


def test_device_life(acme: TestClient) -> None:
    created = create(
        acme,
        name="pump-1",
        hardwareIds=["mac:01"],
        tagIds=["floor-2"],
        metadata={"site": "Lyon"},
    )
    device_id = created["id"]
    assert created["name"] == "pump-1"
    assert created["hardwareIds"] == ["mac:01"]
    assert created["tagIds"] == ["floor-2"]
    assert created["metadata"] == {"site": "Lyon"}
    assert created["enabled"] is True
    assert created["certificateId"] is None
    assert created["lastReport"] is None
    assert acme.get(f"{DEVICES}/{device_id}").json()["data"] == created

    changed = acme.patch(
        f"{DEVICES}/{device_id}",
        json={"name": "pump-2", "enabled": False, "metadata": {}, "tagIds": []},
    ).json()["data"]
    assert changed["name"] == "pump-2"
    assert changed["enabled"] is False
    assert changed["metadata"] == {}
    assert changed["tagIds"] == []
    assert changed["hardwareIds"] == ["mac:01"]

    assert acme.delete(f"{DEVICES}/{device_id}").json() == {}
    assert acme.get(f"{DEVICES}/{device_id}").status_code == 404


def test_certificate_id_set_once(acme: TestClient) -> None:
    device_id = create(acme, name="pump-1")["id"]
    path = f"{DEVICES}/{device_id}"
    first = acme.patch(path, json={"certificateId": "serial-1"})
    again = acme.patch(path, json={"certificateId": "serial-1"})
    changed = acme.patch(path, json={"certificateId": "serial-2"})
    assert first.json()["data"]["certificateId"] == "serial-1"
    assert again.status_code == 200
    assert changed.status_code == 409
    assert changed.json()["code"] == "certificate_id_immutable"
    assert acme.get(path).json()["data"]["certificateId"] == "serial-1"


def test_add_and_remove_labels(acme: TestClient) -> None:
    device_id = create(acme, name="pump-1", hardwareIds=["h1"], tagIds=["t1"])["id"]
    changed = acme.patch(
        f"{DEVICES}/{device_id}",
        json={"addHardwareId": ["h2"], "removeTagId": ["t1"], "addTagId": ["t2"]},
    ).json()["data"]
    assert changed["hardwareIds"] == ["h1", "h2"]
    assert changed["tagIds"] == ["t2"]


def test_unknown_fields_are_ignored(acme: TestClient) -> None:
    created = create(acme, name="pump-1", blueprintId="bp", cohortId="c")
    assert "blueprintId" not in created


@pytest.mark.parametrize(
    "body, status, code",
    [
        pytest.param({"name": " pump"}, 400, "invalid_input", id="fail/white-space"),
        pytest.param({"name": "x" * 201}, 400, "invalid_input", id="fail/long-name"),
        pytest.param(
            {"name": "p", "certificateId": "a b"},
            400,
            "invalid_certificate_id",
            id="fail/certificate-id",
        ),
        pytest.param(
            {"name": "p", "tagIds": [""]}, 400, "invalid_input", id="fail/tag"
        ),
        pytest.param({}, 422, "invalid_request", id="fail/no-name"),
        pytest.param({"name": 5}, 422, "invalid_request", id="fail/name-type"),
        pytest.param(
            {"name": "p", "metadata": []}, 422, "invalid_request", id="fail/metadata"
        ),
    ],
)
def test_create_errors(
    acme: TestClient, body: dict[str, object], status: int, code: str
) -> None:
    response = acme.post(DEVICES, json=body)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_duplicate_name_is_409(acme: TestClient) -> None:
    create(acme, name="pump-1")
    response = acme.post(DEVICES, json={"name": "pump-1"})
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


def test_rename_to_taken_name_is_409(acme: TestClient) -> None:
    create(acme, name="pump-1")
    device_id = create(acme, name="pump-2")["id"]
    response = acme.patch(f"{DEVICES}/{device_id}", json={"name": "pump-1"})
    assert response.status_code == 409


def test_list_filters_and_pages(acme: TestClient) -> None:
    for name in ("pump-1", "pump-10", "valve-1", "pump-2"):
        create(acme, name=name)
    exact = acme.get(DEVICES, params={"deviceName": "pump-1"}).json()
    term = acme.get(DEVICES, params={"term": "PUMP"}).json()
    paged = acme.get(DEVICES, params={"page": 1, "perPage": 3}).json()
    assert [device["name"] for device in exact["list"]] == ["pump-1"]
    assert exact["total"] == 1
    assert [device["name"] for device in term["list"]] == [
        "pump-1",
        "pump-10",
        "pump-2",
    ]
    assert [device["name"] for device in paged["list"]] == ["valve-1"]
    assert (paged["page"], paged["perPage"], paged["total"]) == (1, 3, 4)


@pytest.mark.parametrize("route", ["devices", "audit"])
def test_page_beyond_max_is_422(acme: TestClient, route: str) -> None:
    response = acme.get(
        f"/v1/projects/acme/{route}", params={"page": 9223372036854775807}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_other_projects_device_is_404(acme: TestClient, other: TestClient) -> None:
    device_id = create(acme, name="pump-1")["id"]
    path = f"/v1/projects/other/devices/{device_id}"
    assert other.get(path).status_code == 404
    assert other.patch(path, json={"enabled": False}).status_code == 404
    assert other.delete(path).status_code == 404
    assert acme.get(f"{DEVICES}/{device_id}").json()["data"]["enabled"] is True


def test_certificate_details_after_connection(
    acme: TestClient, database: Database
) -> None:
    created = create(acme, name="sensor-1")
    seen = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    expiry = dt.datetime(2026, 3, 11, tzinfo=dt.UTC)
    associate(
        database,
        project_id="acme",
        certificate_id="sensor-1",
        fingerprint="ab" * 32,
        not_after=expiry,
        now=seen,
    )
    data = acme.get(f"{DEVICES}/{created['id']}").json()["data"]
    assert data["certificateId"] == "sensor-1"
    assert data["lastReport"] == "2026-03-04T05:06:07Z"
    assert data["certificate"] == {
        "certificateId": "sensor-1",
        "lastFingerprint": "ab" * 32,
        "notAfter": "2026-03-11T00:00:00Z",
        "lastSeen": "2026-03-04T05:06:07Z",
    }
