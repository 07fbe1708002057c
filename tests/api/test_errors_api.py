"""Every failure is JSON with a stable code; OpenAPI documents the routes."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetgate.api import errors
from fleetgate.errors import StoreUnavailable
from fleetgate.store import devices


def test_unknown_route_is_json_404(admin: TestClient) -> None:
    response = admin.get("/v1/nothing")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_wrong_method_is_json_405(admin: TestClient) -> None:
    response = admin.put("/v1/projects")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_validation_error_names_field_not_value(admin: TestClient) -> None:
    response = admin.post(
        "/v1/projects/acme/devices", json={"name": "p", "hardwareIds": "secret-x"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert "body.hardwareIds" in response.json()["message"]
    assert "secret-x" not in response.text


def test_malformed_json_is_422(admin: TestClient) -> None:
    response = admin.post(
        "/v1/projects/acme/devices",
        content=b"{",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_store_unavailable_is_503(
    admin: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*_args: object, **_kwargs: object) -> None:
        raise StoreUnavailable("cannot access the database: connection refused")

    monkeypatch.setattr(devices, "list_devices", unavailable)
    response = admin.get("/v1/projects/acme/devices")
    assert response.status_code == 503
    assert response.json() == {
        "code": "store_unavailable",
        "message": "cannot access the database: connection refused",
    }


def test_unexpected_error_is_generic_500(
    admin: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(devices, "list_devices", broken)
    response = admin.get("/v1/projects/acme/devices")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "internal detail" not in response.text
    assert "Traceback" not in response.text
    assert "internal detail that must not leak" in caplog.text


def test_oversized_body_is_413(
    admin: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b'{"name": "' + b"x" * errors.MAX_BODY_BYTES + b'"}'
    response = admin.post(
        "/v1/projects/acme/devices",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_openapi_has_request_examples(app: FastAPI, client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    upload = document["paths"]["/v1/projects/{project_id}/certificates"]["post"]
    state_put = document["paths"][
        "/v1/projects/{project_id}/devices/{device_id}/data/{path}"
    ]["put"]
    assert "examples" in schemas["CertificateUpload"]
    assert "examples" in schemas["DeviceCreate"]
    assert "examples" in schemas["DeviceUpdate"]
    assert "requestBody" in upload
    assert "examples" in state_put["requestBody"]["content"]["application/json"]
    assert "x-api-key" in str(document["components"]["securitySchemes"])


def test_docs_page_is_served(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "openapi.json" in response.text


def test_docs_page_loads_nothing_from_other_hosts(client: TestClient) -> None:
    page = client.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(
        r"url: '([^']+)'", page
    )

    assert assets, page
    assert [url for url in assets if not url.startswith("/")] == []
    assert "https://" not in page
    for url in assets:
        assert client.get(url).status_code == 200, url
