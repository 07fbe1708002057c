"""``.../devices/{id}/logs`` and ``.../stream``: what devices posted, by time."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from fleetgate.store import device_logs, stream
from fleetgate.store.database import Database

T0 = dt.datetime(2026, 12, 14, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def device_id(acme: TestClient) -> str:
    response = acme.post("/v1/projects/acme/devices", json={"name": "pump-1"})
    return str(response.json()["data"]["id"])


def add_logs(database: Database, device_id: str, count: int) -> None:
    for minute in range(count):
        device_logs.add_log_entry(
            database,
            project_id="acme",
            device_id=device_id,
            level="info",
            module="app",
            message=f"tick {minute}",
            metadata={"seq": minute},
            received_at=T0 + dt.timedelta(minutes=minute),
        )


class TestLogs:
    def test_lists_newest_first(
        self, acme: TestClient, database: Database, device_id: str
    ) -> None:
        add_logs(database, device_id, 3)
        body = acme.get(f"/v1/projects/acme/devices/{device_id}/logs").json()
        assert body["total"] == 3
        assert [item["message"] for item in body["list"]] == [
            "tick 2",
            "tick 1",
            "tick 0",
        ]
        first = body["list"][0]
        assert first["level"] == "info"
        assert first["module"] == "app"
        assert first["metadata"] == {"seq": 2}
        assert first["deviceId"] == device_id
        assert first["timestamp"].startswith("2026-12-14T08:02:00")

    def test_time_range_and_paging(
        self, acme: TestClient, database: Database, device_id: str
    ) -> None:
        add_logs(database, device_id, 10)
        response = acme.get(
            f"/v1/projects/acme/devices/{device_id}/logs",
            params={
                "start": "2026-12-14T08:02:00Z",
                "end": "2026-12-14T08:07:00Z",
                "perPage": 2,
                "page": 1,
            },
        )
        body = response.json()
        assert body["total"] == 5
        assert body["page"] == 1
        assert body["perPage"] == 2
        assert [item["message"] for item in body["list"]] == ["tick 4", "tick 3"]

    def test_naive_time_is_400(self, acme: TestClient, device_id: str) -> None:
        response = acme.get(
            f"/v1/projects/acme/devices/{device_id}/logs",
            params={"start": "2026-12-14T08:00:00"},
        )
        assert response.status_code == 400
        assert "time zone" in response.json()["message"]

    def test_end_before_start_is_400(self, acme: TestClient, device_id: str) -> None:
        response = acme.get(
            f"/v1/projects/acme/devices/{device_id}/logs",
            params={"start": "2026-12-14T09:00:00Z", "end": "2026-12-14T08:00:00Z"},
        )
        assert response.status_code == 400

    def test_other_project_device_is_404(
        self, other: TestClient, device_id: str
    ) -> None:
        response = other.get(f"/v1/projects/other/devices/{device_id}/logs")
        assert response.status_code == 404

    def test_unknown_device_is_404(self, acme: TestClient) -> None:
        response = acme.get("/v1/projects/acme/devices/nope/logs")
        assert response.status_code == 404


class TestStream:
    def test_data_nests_value_under_path(
        self, acme: TestClient, database: Database, device_id: str
    ) -> None:
        stream.add_stream_record(
            database,
            project_id="acme",
            device_id=device_id,
            path=("env", "temp"),
            value=21.5,
            received_at=T0,
        )
        stream.add_stream_record(
            database,
            project_id="acme",
            device_id=device_id,
            path=(),
            value={"rssi": -70},
            received_at=T0 + dt.timedelta(seconds=1),
        )
        body = acme.get(f"/v1/projects/acme/devices/{device_id}/stream").json()
        assert body["total"] == 2
        assert body["list"][0]["data"] == {"rssi": -70}
        assert body["list"][0]["path"] == ""
        assert body["list"][1]["data"] == {"env": {"temp": 21.5}}
        assert body["list"][1]["path"] == "env/temp"

    def test_time_range(
        self, acme: TestClient, database: Database, device_id: str
    ) -> None:
        for second in range(4):
            stream.add_stream_record(
                database,
                project_id="acme",
                device_id=device_id,
                path=("n",),
                value=second,
                received_at=T0 + dt.timedelta(seconds=second),
            )
        body = acme.get(
            f"/v1/projects/acme/devices/{device_id}/stream",
            params={"start": "2026-12-14T08:00:01Z", "end": "2026-12-14T08:00:03Z"},
        ).json()
        assert [item["data"] for item in body["list"]] == [{"n": 2}, {"n": 1}]

    def test_deleted_device_takes_records(
        self, acme: TestClient, database: Database, device_id: str
    ) -> None:
        stream.add_stream_record(
            database, project_id="acme", device_id=device_id, path=(), value=1
        )
        acme.delete(f"/v1/projects/acme/devices/{device_id}")
        response = acme.get(f"/v1/projects/acme/devices/{device_id}/stream")
        assert response.status_code == 404
