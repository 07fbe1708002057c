"""``/v1/projects/{id}/manifests``."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from fleetgate.store import audit
from fleetgate.store.database import Database

CSV = {"content-type": "text/csv"}


def test_import_then_list(acme: TestClient) -> None:
    imported = acme.post(
        "/v1/projects/acme/manifests?batch=b1",
        content=b"certificate_id\nsn-1\nsn-2\n",
        headers=CSV,
    )
    listed = acme.get("/v1/projects/acme/manifests")

    assert imported.status_code == 200
    assert imported.json()["list"][0]["entries"] == 2
    assert listed.json()["list"][0]["batch"] == "b1"


def test_import_json_body(acme: TestClient) -> None:
    body = json.dumps([{"certificateId": "sn-1", "batch": "b1"}])

    response = acme.post(
        "/v1/projects/acme/manifests",
        content=body,
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 200
    assert response.json()["total"] == 1


def test_bad_row_is_400_naming_line(acme: TestClient) -> None:
    response = acme.post(
        "/v1/projects/acme/manifests?batch=b1",
        content=b"certificate_id\nsn-1\nsn 2\n",
        headers=CSV,
    )

    assert response.status_code == 400
    assert "line 3:" in response.json()["message"]
    assert acme.get("/v1/projects/acme/manifests").json()["total"] == 0


def test_report_shape(acme: TestClient) -> None:
    acme.post(
        "/v1/projects/acme/manifests?batch=b1",
        content=b"certificate_id\nsn-1\n",
        headers=CSV,
    )

    body = acme.get("/v1/projects/acme/manifests/report").json()["data"]

    assert body == {
        "unlisted": [],
        "neverSeen": [{"batch": "b1", "certificateId": "sn-1"}],
        "cloneSuspects": [],
    }


def test_requirement_is_audited(acme: TestClient, database: Database) -> None:
    response = acme.put(
        "/v1/projects/acme/manifests/requirement", json={"requireManifest": True}
    )

    assert response.status_code == 200
    assert acme.get("/v1/projects/acme/manifests/requirement").json() == {
        "data": {"requireManifest": True}
    }
    actions = [e.action for e in audit.list_audit_entries(database, "acme").items]
    assert "project.update" in actions


def test_delete_batch(acme: TestClient) -> None:
    acme.post(
        "/v1/projects/acme/manifests?batch=b1",
        content=b"certificate_id\nsn-1\n",
        headers=CSV,
    )

    deleted = acme.delete("/v1/projects/acme/manifests/b1")
    again = acme.delete("/v1/projects/acme/manifests/b1")

    assert deleted.status_code == 200
    assert again.status_code == 404


def test_other_project_manifest_is_404(acme: TestClient) -> None:
    response = acme.get("/v1/projects/other/manifests/report")

    assert response.status_code == 404
