"""``/v1/projects/{id}/devices/{deviceId}/credentials``: PSK credentials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetgate.api.app import create_app
from fleetgate.store import apikeys
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project
from fleetgate.store.sealing import KeyEncryptionKey

KEY_HEX = bytes(range(100, 132)).hex()


@pytest.fixture
def psk_changes() -> list[str]:
    return []


@pytest.fixture
def app(database: Database, tmp_path: Path, psk_changes: list[str]) -> FastAPI:
    create_project(database, "acme")
    create_project(database, "other")
    kek = KeyEncryptionKey.load_or_create(tmp_path / "kek")
    return create_app(database, psk_key=kek, psk_changed=psk_changes.append)


def _client(app: FastAPI, database: Database, project: str) -> Iterator[TestClient]:
    key = apikeys.create_api_key(database, project, actor="test")
    headers = {"x-api-key": key.secret}
    with TestClient(app, headers=headers, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def acme(app: FastAPI, database: Database) -> Iterator[TestClient]:
    yield from _client(app, database, "acme")


@pytest.fixture
def other(app: FastAPI, database: Database) -> Iterator[TestClient]:
    yield from _client(app, database, "other")


@pytest.fixture
def device_id(acme: TestClient) -> str:
    response = acme.post("/v1/projects/acme/devices", json={"name": "sensor-1"})
    assert response.status_code == 200
    return str(response.json()["data"]["id"])


def credentials_url(device_id: str, project: str = "acme") -> str:
    return f"/v1/projects/{project}/devices/{device_id}/credentials"


def test_created_key_is_shown_once(acme: TestClient, device_id: str) -> None:
    created = acme.post(
        credentials_url(device_id),
        json={"type": "PRE_SHARED_KEY", "identity": "s1@acme", "preSharedKey": KEY_HEX},
    )
    assert created.status_code == 200
    data = created.json()["data"]
    assert data["preSharedKey"] == KEY_HEX
    assert data["identity"] == "s1@acme"
    assert data["type"] == "PRE_SHARED_KEY"

    listed = acme.get(credentials_url(device_id))
    single = acme.get(f"{credentials_url(device_id)}/{data['id']}")
    assert listed.status_code == 200
    assert single.status_code == 200
    for body in (listed.text, single.text):
        assert KEY_HEX not in body
        assert "preSharedKey" not in body
    assert listed.json()["list"][0]["identity"] == "s1@acme"
    assert single.json()["data"]["lastUsedAt"] is None


def test_generated_key_and_identity(acme: TestClient, device_id: str) -> None:
    created = acme.post(credentials_url(device_id), json={})
    data = created.json()["data"]
    key = bytes.fromhex(data["preSharedKey"])
    assert len(key) == 32
    assert data["preSharedKeyText"] == key.decode("ascii")
    assert data["identity"].endswith("-sensor-1@acme")


def test_binary_key_has_no_text_form(acme: TestClient, device_id: str) -> None:
    created = acme.post(
        credentials_url(device_id), json={"preSharedKey": bytes(range(32)).hex()}
    )
    assert created.json()["data"]["preSharedKeyText"] is None


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("00112233", id="fail/short"),
        pytest.param("aa" * 32, id="fail/repeated"),
        pytest.param("zz" * 16, id="fail/not-hex"),
    ],
)
def test_weak_key_is_rejected(acme: TestClient, device_id: str, key: str) -> None:
    response = acme.post(credentials_url(device_id), json={"preSharedKey": key})
    assert response.status_code == 400
    assert response.json()["code"] == "weak_psk"
    assert acme.get(credentials_url(device_id)).json()["total"] == 0


def test_odd_length_key_names_odd_digits(acme: TestClient, device_id: str) -> None:
    key = bytes(range(100, 118)).hex()[:-1]
    response = acme.post(credentials_url(device_id), json={"preSharedKey": key})
    assert response.status_code == 400
    assert "odd number of hex digits (35)" in response.json()["message"]


def test_identity_of_another_project_is_rejected(
    acme: TestClient, device_id: str
) -> None:
    response = acme.post(credentials_url(device_id), json={"identity": "s1@other"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_psk_identity"


def test_taken_identity_is_conflict(acme: TestClient, device_id: str) -> None:
    acme.post(credentials_url(device_id), json={"identity": "s1@acme"})
    again = acme.post(credentials_url(device_id), json={"identity": "s1@acme"})
    assert again.status_code == 409


def test_other_project_gets_not_found(
    acme: TestClient, other: TestClient, device_id: str
) -> None:
    created = acme.post(credentials_url(device_id), json={}).json()["data"]
    credential = f"{credentials_url(device_id, 'other')}/{created['id']}"

    responses = [
        other.post(credentials_url(device_id, "other"), json={}),
        other.get(credentials_url(device_id, "other")),
        other.get(credential),
        other.delete(credential),
        other.delete(f"/v1/projects/other/credentials/{created['id']}"),
        other.get(credentials_url(device_id)),
    ]
    assert [response.status_code for response in responses] == [404] * 6
    assert acme.get(credentials_url(device_id)).json()["total"] == 1


def test_delete_removes_and_tells_gateway(
    acme: TestClient, device_id: str, psk_changes: list[str]
) -> None:
    created = acme.post(credentials_url(device_id), json={}).json()["data"]
    deleted = acme.delete(f"{credentials_url(device_id)}/{created['id']}")

    assert deleted.status_code == 200
    assert deleted.json() == {}
    assert acme.get(credentials_url(device_id)).json()["total"] == 0
    assert psk_changes == ["acme", "acme"]


def test_project_level_delete(acme: TestClient, device_id: str) -> None:
    created = acme.post(credentials_url(device_id), json={}).json()["data"]
    deleted = acme.delete(f"/v1/projects/acme/credentials/{created['id']}")
    assert deleted.status_code == 200
    assert acme.get(credentials_url(device_id)).json()["total"] == 0


def test_writes_are_audited(acme: TestClient, device_id: str) -> None:
    created = acme.post(
        credentials_url(device_id), json={"preSharedKey": KEY_HEX}
    ).json()["data"]
    acme.delete(f"{credentials_url(device_id)}/{created['id']}")

    audit = acme.get("/v1/projects/acme/audit")
    actions = [entry["action"] for entry in audit.json()["list"]]
    assert "psk.create" in actions
    assert "psk.delete" in actions
    assert KEY_HEX not in audit.text


def test_unsupported_type_is_rejected(acme: TestClient, device_id: str) -> None:
    response = acme.post(
        credentials_url(device_id), json={"type": "ASYMMETRIC_KEY_PAIR"}
    )
    assert response.status_code in (400, 422)
    assert acme.get(credentials_url(device_id)).json()["total"] == 0
