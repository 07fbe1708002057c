"""``/v1/projects/{id}/devices/{id}/data``: LightDB State over HTTP."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from fleetgate.gateway.services.state import MAX_VALUE_BYTES
from fleetgate.store import state
from fleetgate.store.database import Database
from fleetgate.store.models import DeviceState


@pytest.fixture
def data(acme: TestClient) -> str:
    response = acme.post("/v1/projects/acme/devices", json={"name": "pump-1"})
    return f"/v1/projects/acme/devices/{response.json()['data']['id']}/data"


def test_set_read_delete(acme: TestClient, data: str) -> None:
    written = acme.post(f"{data}/sensor", json={"temp": 21.5})
    assert written.status_code == 200
    assert written.json() == {"data": {"temp": 21.5}}
    assert acme.get(f"{data}/sensor/temp").json() == {"data": 21.5}
    assert acme.get(data).json() == {"data": {"sensor": {"temp": 21.5}}}

    assert acme.delete(f"{data}/sensor/temp").json() == {}
    assert acme.get(f"{data}/sensor").json() == {"data": {}}


def test_put_replaces_value(acme: TestClient, data: str) -> None:
    acme.put(f"{data}/config", json={"a": 1, "b": 2})
    acme.put(f"{data}/config", json={"c": 3})
    assert acme.get(f"{data}/config").json() == {"data": {"c": 3}}


@pytest.mark.parametrize(
    "value",
    [None, 0, "on", [1, 2], {"nested": {"deep": True}}],
    ids=["null", "number", "string", "array", "object"],
)
def test_any_json_value_round_trips(acme: TestClient, data: str, value: object) -> None:
    # json=None would send no body at all, so the body is encoded here.
    written = acme.post(
        f"{data}/value",
        content=json.dumps(value),
        headers={"content-type": "application/json"},
    )
    assert written.json() == {"data": value}
    assert acme.get(f"{data}/value").json() == {"data": value}


def test_api_writes_what_device_reads(
    acme: TestClient, data: str, database: Database
) -> None:
    device_id = data.split("/")[-2]
    acme.post(f"{data}/config/interval", json=30)
    state.set_state(database, device_id, ("reported",), {"ok": True})
    assert state.get_state(database, device_id, ("config",)) == {"interval": 30}
    assert acme.get(f"{data}/reported").json() == {"data": {"ok": True}}


def test_root_must_stay_an_object(acme: TestClient, data: str) -> None:
    rejected = acme.put(data, json=[1])
    replaced = acme.put(data, json={"only": 1})
    assert rejected.status_code == 400
    assert replaced.json() == {"data": {"only": 1}}
    assert acme.get(data).json() == {"data": {"only": 1}}


def test_delete_root_empties_document(acme: TestClient, data: str) -> None:
    acme.post(f"{data}/a", json=1)
    assert acme.delete(data).status_code == 200
    assert acme.get(data).json() == {"data": {}}


def test_delete_missing_path_is_ok(acme: TestClient, data: str) -> None:
    assert acme.delete(f"{data}/nothing/here").status_code == 200


def test_missing_path_is_404(acme: TestClient, data: str) -> None:
    response = acme.get(f"{data}/nothing")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_trailing_slash_is_ignored(acme: TestClient, data: str) -> None:
    acme.post(f"{data}/a/", json=1)
    assert acme.get(f"{data}/a").json() == {"data": 1}


@pytest.mark.parametrize(
    "body, status, code",
    [
        pytest.param(b"", 400, "invalid_input", id="fail/empty"),
        pytest.param(b"{not json", 400, "invalid_input", id="fail/syntax"),
        pytest.param(b"NaN", 400, "invalid_input", id="fail/nan"),
        pytest.param(b'{"x": Infinity}', 400, "invalid_input", id="fail/infinity"),
        pytest.param(
            b'"' + b"x" * MAX_VALUE_BYTES + b'"',
            413,
            "payload_too_large",
            id="fail/too-large",
        ),
        pytest.param(b"[" * 40 + b"]" * 40, 400, "invalid_input", id="fail/deep"),
        pytest.param(
            b"[" * 5000 + b"]" * 5000, 400, "invalid_input", id="fail/too-deep-to-parse"
        ),
    ],
)
def test_bad_bodies(
    acme: TestClient, data: str, body: bytes, status: int, code: str
) -> None:
    response = acme.post(
        f"{data}/x", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_empty_path_step_is_400(acme: TestClient, data: str) -> None:
    response = acme.post(f"{data}/a//b", json=1)
    assert response.status_code == 400


def test_unknown_device_is_404(acme: TestClient) -> None:
    path = "/v1/projects/acme/devices/000000000000000000000000/data/x"
    assert acme.get(path).status_code == 404
    assert acme.post(path, json=1).status_code == 404


def test_other_projects_device_is_404(
    acme: TestClient, admin: TestClient, data: str
) -> None:
    device_id = data.split("/")[-2]
    path = f"/v1/projects/other/devices/{device_id}/data"
    assert admin.get(path).status_code == 404
    assert admin.put(f"{path}/x", json=1).status_code == 404
    assert acme.get(data).json() == {"data": {}}


def test_deep_stored_document_is_readable(
    acme: TestClient, data: str, database: Database
) -> None:
    deep: object = []
    for _ in range(599):
        deep = [deep]
    # Stored directly, as a write from before the depth limit could have.
    with database.session() as session:
        session.add(
            DeviceState(
                device_id=data.split("/")[-2], document={"deep": deep}, revision=1
            )
        )

    response = acme.get(data)

    assert response.status_code == 200, response.text
    assert response.text.startswith('{"data":{"deep":[[[')
