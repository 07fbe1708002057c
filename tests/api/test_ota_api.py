"""Artifacts, releases, rollouts and device firmware state over the API."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fleetgate.api.app import create_app
from fleetgate.store import apikeys, audit, devices, ota_reports
from fleetgate.store.database import Database

BASE = "/v1/projects/acme"


def upload(
    client: TestClient, version: str, content: bytes, package: str = "main"
) -> Any:
    response = client.post(
        f"{BASE}/artifacts",
        params={"package": package, "version": version},
        content=content,
        headers={"content-type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def release(client: TestClient, name: str, *artifact_ids: str) -> Any:
    response = client.post(
        f"{BASE}/releases", json={"name": name, "artifactIds": list(artifact_ids)}
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


class TestArtifacts:
    def test_raw_upload_computes_hash_and_size(self, acme: TestClient) -> None:
        content = os.urandom(300_000)
        artifact = upload(acme, "1.0.0", content)
        assert artifact["size"] == len(content)
        assert artifact["sha256"] == hashlib.sha256(content).hexdigest()
        assert artifact["uri"] == "/.u/c/main@1.0.0"

    def test_json_upload_takes_base64(self, acme: TestClient) -> None:
        content = b"firmware"
        response = acme.post(
            f"{BASE}/artifacts",
            json={
                "package": "modem",
                "version": "2.1",
                "content": base64.b64encode(content).decode(),
            },
        )
        assert response.status_code == 200
        assert response.json()["data"]["sha256"] == hashlib.sha256(content).hexdigest()

    def test_bad_base64_is_invalid_base64(self, acme: TestClient) -> None:
        response = acme.post(
            f"{BASE}/artifacts",
            json={"package": "main", "version": "1", "content": "not base64!"},
        )
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_base64"
        assert "send the firmware image encoded" in response.json()["message"]
        assert "PEM" not in response.json()["message"]

    def test_json_array_body_names_body(self, acme: TestClient) -> None:
        response = acme.post(f"{BASE}/artifacts", json=[1, 2])
        message = response.json()["message"]
        assert response.status_code == 400
        assert message.startswith("cannot store artifact: body: Input should be")
        assert ": :" not in message

    def test_raw_upload_needs_package_and_version(self, acme: TestClient) -> None:
        response = acme.post(
            f"{BASE}/artifacts",
            content=b"x",
            headers={"content-type": "application/octet-stream"},
        )
        assert response.status_code == 400
        assert "package and version" in response.json()["message"]

    def test_invalid_version_is_rejected(self, acme: TestClient) -> None:
        response = acme.post(
            f"{BASE}/artifacts",
            params={"package": "main", "version": "1.0/evil"},
            content=b"x",
            headers={"content-type": "application/octet-stream"},
        )
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_input"

    def test_duplicate_version_conflicts(self, acme: TestClient) -> None:
        upload(acme, "1.0.0", b"a")
        response = acme.post(
            f"{BASE}/artifacts",
            params={"package": "main", "version": "1.0.0"},
            content=b"b",
            headers={"content-type": "application/octet-stream"},
        )
        assert response.status_code == 409
        assert response.json()["code"] == "conflict"

    def test_list_and_get(self, acme: TestClient) -> None:
        artifact = upload(acme, "1.0.0", b"a")
        listing = acme.get(f"{BASE}/artifacts").json()
        single = acme.get(f"{BASE}/artifacts/{artifact['id']}").json()
        assert [item["id"] for item in listing["list"]] == [artifact["id"]]
        assert listing["total"] == 1
        assert single["data"] == artifact

    def test_other_project_gets_404(self, acme: TestClient, other: TestClient) -> None:
        artifact = upload(acme, "1.0.0", b"a")
        response = other.get(f"/v1/projects/other/artifacts/{artifact['id']}")
        cross = other.get(f"{BASE}/artifacts")
        assert response.status_code == 404
        assert cross.status_code == 404

    def test_artifact_in_release_cannot_be_deleted(self, acme: TestClient) -> None:
        artifact = upload(acme, "1.0.0", b"a")
        release(acme, "r1", artifact["id"])
        response = acme.delete(f"{BASE}/artifacts/{artifact['id']}")
        assert response.status_code == 409
        assert response.json()["code"] == "artifact_in_use"
        assert "'r1'" in response.json()["message"]

    def test_delete_is_audited(self, acme: TestClient, database: Database) -> None:
        artifact = upload(acme, "1.0.0", b"a")
        response = acme.delete(f"{BASE}/artifacts/{artifact['id']}")
        actions = [
            entry.action
            for entry in audit.list_audit_entries(database, project_id="acme").items
        ]
        assert response.status_code == 200
        assert "artifact.upload" in actions
        assert "artifact.delete" in actions


@pytest.fixture
def small_limit(database: Database) -> Iterator[TestClient]:
    key = apikeys.create_api_key(database, "acme", actor="test")
    app = create_app(database, max_artifact_bytes=1000)
    with TestClient(
        app, headers={"x-api-key": key.secret}, raise_server_exceptions=False
    ) as client:
        yield client


class TestArtifactLimit:
    def test_image_over_limit_is_413(
        self, acme: TestClient, small_limit: TestClient
    ) -> None:
        response = small_limit.post(
            f"{BASE}/artifacts",
            params={"package": "main", "version": "1"},
            content=b"x" * 1001,
            headers={"content-type": "application/octet-stream"},
        )
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"
        assert "maximum of 1000" in response.json()["message"]

    def test_body_far_over_limit_is_413_before_parsing(
        self, acme: TestClient, small_limit: TestClient
    ) -> None:
        response = small_limit.post(
            f"{BASE}/artifacts",
            params={"package": "main", "version": "1"},
            content=b"x" * 200_000,
            headers={"content-type": "application/octet-stream"},
        )
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"

    def test_default_limit_takes_several_megabytes(self, acme: TestClient) -> None:
        content = os.urandom(3 * 1024 * 1024)
        artifact = upload(acme, "big", content)
        assert artifact["size"] == len(content)


class TestReleases:
    def test_rollout_to_project_shows_in_device_firmware(
        self, acme: TestClient, database: Database
    ) -> None:
        device_id = devices.create_device(database, "acme", "sensor-1").id
        artifact = upload(acme, "1.0.0", b"image")
        created = release(acme, "r1", artifact["id"])
        rolled = acme.post(
            f"{BASE}/releases/{created['id']}/rollout", json={"allDevices": True}
        )
        firmware = acme.get(f"{BASE}/devices/{device_id}/firmware").json()["data"]
        assert rolled.status_code == 200
        assert rolled.json()["data"]["rolledOut"] is True
        assert firmware["desired"]["releaseId"] == created["id"]
        assert firmware["desired"]["components"][0]["sha256"] == artifact["sha256"]

    def test_rollback_empties_manifest(
        self, acme: TestClient, database: Database
    ) -> None:
        device_id = devices.create_device(database, "acme", "sensor-1").id
        created = release(acme, "r1", upload(acme, "1", b"a")["id"])
        acme.post(
            f"{BASE}/releases/{created['id']}/rollout", json={"deviceIds": [device_id]}
        )
        before = acme.get(f"{BASE}/devices/{device_id}/firmware").json()["data"]
        response = acme.post(f"{BASE}/releases/{created['id']}/rollback")
        after = acme.get(f"{BASE}/devices/{device_id}/firmware").json()["data"]
        assert response.status_code == 200
        assert after["desired"]["components"] == []
        assert after["desired"]["sequence"] > before["desired"]["sequence"]

    def test_rollout_without_target_is_400(self, acme: TestClient) -> None:
        created = release(acme, "r1", upload(acme, "1", b"a")["id"])
        response = acme.post(f"{BASE}/releases/{created['id']}/rollout", json={})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_input"

    def test_rollout_to_other_project_device_is_404(
        self, acme: TestClient, database: Database
    ) -> None:
        foreign = devices.create_device(database, "other", "sensor-9").id
        created = release(acme, "r1", upload(acme, "1", b"a")["id"])
        response = acme.post(
            f"{BASE}/releases/{created['id']}/rollout", json={"deviceIds": [foreign]}
        )
        assert response.status_code == 404

    def test_release_with_other_project_artifact_is_404(
        self, acme: TestClient, other: TestClient
    ) -> None:
        foreign = other.post(
            "/v1/projects/other/artifacts",
            params={"package": "main", "version": "1"},
            content=b"x",
            headers={"content-type": "application/octet-stream"},
        ).json()["data"]
        response = acme.post(
            f"{BASE}/releases", json={"name": "r1", "artifactIds": [foreign["id"]]}
        )
        assert response.status_code == 404

    def test_rolled_out_release_cannot_be_deleted(self, acme: TestClient) -> None:
        created = release(acme, "r1", upload(acme, "1", b"a")["id"])
        acme.post(f"{BASE}/releases/{created['id']}/rollout", json={"allDevices": True})
        rejected = acme.delete(f"{BASE}/releases/{created['id']}")
        acme.post(f"{BASE}/releases/{created['id']}/rollback")
        deleted = acme.delete(f"{BASE}/releases/{created['id']}")
        assert rejected.status_code == 409
        assert deleted.status_code == 200
        assert acme.get(f"{BASE}/releases").json()["total"] == 0

    def test_other_project_release_is_404(
        self, acme: TestClient, other: TestClient
    ) -> None:
        created = release(acme, "r1", upload(acme, "1", b"a")["id"])
        response = other.post(
            f"/v1/projects/other/releases/{created['id']}/rollout",
            json={"allDevices": True},
        )
        assert response.status_code == 404


class TestDeviceFirmware:
    def test_history_lists_reports_newest_first(
        self, acme: TestClient, database: Database
    ) -> None:
        device_id = devices.create_device(database, "acme", "sensor-1").id
        for state in (1, 2):
            ota_reports.add_report(
                database,
                project_id="acme",
                device_id=device_id,
                package="main",
                state=state,
                reason=0,
                current_version="1.0.0",
                target_version="1.1.0",
            )
        history = acme.get(f"{BASE}/devices/{device_id}/firmware/history").json()
        latest = acme.get(f"{BASE}/devices/{device_id}/firmware").json()["data"]
        assert [item["stateName"] for item in history["list"]] == [
            "downloaded",
            "downloading",
        ]
        assert latest["components"][0]["state"] == 2

    def test_other_project_device_is_404(
        self, other: TestClient, database: Database
    ) -> None:
        device_id = devices.create_device(database, "acme", "sensor-1").id
        response = other.get(f"/v1/projects/other/devices/{device_id}/firmware")
        assert response.status_code == 404
