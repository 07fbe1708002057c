"""``/v1/projects/{id}/connections``: the connection log, per project."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetgate.errors import Reason
from fleetgate.store import connections
from fleetgate.store.connections import ConnectionResult, NewConnectionEvent
from fleetgate.store.database import Database

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
URL = "/v1/projects/acme/connections"


def event(
    result: ConnectionResult,
    *,
    reason: str | None = None,
    certificate_id: str = "sensor-1",
    other_peer: str | None = None,
) -> NewConnectionEvent:
    return NewConnectionEvent(
        project_id="acme",
        peer="192.0.2.7:40112",
        result=result,
        created_at=NOW,
        reason=reason,
        certificate_id=certificate_id,
        device_id="d" * 24,
        fingerprint="ab" * 32,
        other_peer=other_peer,
    )


@pytest.fixture
def logged(app: FastAPI, database: Database) -> None:
    """Four events of project acme, written once ``app`` made the projects."""
    connections.write_events(
        database,
        [
            event(ConnectionResult.ACCEPTED),
            event(ConnectionResult.REJECTED, reason=Reason.EXPIRED),
            event(
                ConnectionResult.REJECTED,
                reason=Reason.UNKNOWN_CA,
                certificate_id="sensor-2",
            ),
            event(ConnectionResult.CLOSED, reason=Reason.IDLE_TIMEOUT),
        ],
    )


@pytest.mark.usefixtures("logged")
def test_events_list_newest_first(acme: TestClient) -> None:
    body = acme.get(URL).json()

    assert [item["result"] for item in body["list"]] == [
        "closed",
        "rejected",
        "rejected",
        "accepted",
    ]
    assert body["total"] == 4
    assert body["perPage"] == 50
    first = body["list"][0]
    assert first["reason"] == "idle_timeout"
    assert first["certificateId"] == "sensor-1"
    assert first["peer"] == "192.0.2.7:40112"
    assert first["createdAt"].startswith("2026-12-04T12:00:00")


@pytest.mark.usefixtures("logged")
def test_filters_narrow_the_list(acme: TestClient) -> None:
    by_reason = acme.get(URL, params={"reason": "unknown_ca"}).json()
    by_result = acme.get(URL, params={"result": "rejected"}).json()
    by_certificate = acme.get(URL, params={"certificate_id": "sensor-2"}).json()

    assert [item["certificateId"] for item in by_reason["list"]] == ["sensor-2"]
    assert by_result["total"] == 2
    assert [item["reason"] for item in by_certificate["list"]] == ["unknown_ca"]


@pytest.mark.usefixtures("logged")
def test_before_pages_through_older_events(acme: TestClient) -> None:
    first = acme.get(URL, params={"limit": 3}).json()["list"]
    rest = acme.get(URL, params={"limit": 3, "before": first[-1]["id"]}).json()

    assert len(first) == 3
    assert [item["result"] for item in rest["list"]] == ["accepted"]


@pytest.mark.usefixtures("logged")
def test_other_project_key_gets_404(other: TestClient) -> None:
    response = other.get(URL)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.usefixtures("logged")
def test_other_project_lists_nothing(other: TestClient) -> None:
    body = other.get("/v1/projects/other/connections").json()

    assert body["list"] == []
    assert body["total"] == 0


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"result": "opened"}, id="fail/unknown-result"),
        pytest.param({"limit": 0}, id="fail/zero-limit"),
        pytest.param({"limit": 1001}, id="fail/limit-too-large"),
        pytest.param({"before": "latest"}, id="fail/before-not-a-number"),
    ],
)
def test_invalid_query_is_422(acme: TestClient, params: dict[str, object]) -> None:
    response = acme.get(URL, params=params)

    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_unknown_reason_is_400(acme: TestClient) -> None:
    response = acme.get(URL, params={"reason": "bad_luck"})

    assert response.status_code == 400
    assert "bad_luck" in response.json()["message"]


def test_clone_suspects_are_listed(
    app: FastAPI, acme: TestClient, database: Database
) -> None:
    connections.write_events(
        database,
        [
            event(
                ConnectionResult.CLONE_SUSPECTED,
                reason=Reason.CLONE_SUSPECTED,
                other_peer="198.51.100.3:2000",
            )
        ],
    )

    body = acme.get(f"{URL}/clones").json()

    [suspect] = body["list"]
    assert suspect["certificateId"] == "sensor-1"
    assert suspect["addresses"] == ["192.0.2.7:40112", "198.51.100.3:2000"]


def test_missing_key_is_401(client: TestClient) -> None:
    assert client.get(URL).status_code == 401
