"""``/metrics``: Prometheus text for admin keys, or for loopback when allowed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetgate import metrics
from fleetgate.store import apikeys


def http_count(route: str, status_class: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "fleetgate_http_request_duration_seconds_count",
        {"method": "GET", "route": route, "status_class": status_class},
    )
    return value or 0.0


@pytest.fixture
def open_metrics(app: FastAPI) -> FastAPI:
    app.state.metrics_without_key = True
    return app


@contextlib.contextmanager
def client_at(app: FastAPI, host: str) -> Iterator[TestClient]:
    """A client without a key whose requests come from ``host``."""
    with TestClient(app, client=(host, 40000)) as client:
        yield client


def test_admin_key_reads_metrics(admin: TestClient) -> None:
    response = admin.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE fleetgate_handshakes_total counter" in response.text
    assert "fleetgate_sessions_active" in response.text


def test_bearer_admin_key_reads_metrics(
    client: TestClient, admin_key: apikeys.IssuedApiKey
) -> None:
    response = client.get(
        "/metrics", headers={"Authorization": f"Bearer {admin_key.secret}"}
    )

    assert response.status_code == 200


def test_missing_key_is_401(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401


def test_project_key_is_403(acme: TestClient) -> None:
    response = acme.get("/metrics")

    assert response.status_code == 403
    assert response.json()["code"] == "admin_key_required"


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("127.0.0.1", id="ok/ipv4"),
        pytest.param("::1", id="ok/ipv6"),
        pytest.param("::ffff:127.0.0.1", id="ok/ipv4-mapped"),
    ],
)
def test_loopback_reads_without_key_when_allowed(
    open_metrics: FastAPI, host: str
) -> None:
    with client_at(open_metrics, host) as client:
        assert client.get("/metrics").status_code == 200


def test_other_address_needs_key_when_allowed(open_metrics: FastAPI) -> None:
    with client_at(open_metrics, "192.0.2.7") as client:
        assert client.get("/metrics").status_code == 401


def test_loopback_needs_key_by_default(app: FastAPI) -> None:
    with client_at(app, "127.0.0.1") as client:
        assert client.get("/metrics").status_code == 401


def test_api_requests_are_timed_by_route(acme: TestClient) -> None:
    route = "/v1/projects/{project_id}/devices"
    before = http_count(route, "2xx")

    acme.get("/v1/projects/acme/devices")
    acme.get("/v1/projects/acme/devices")

    assert http_count(route, "2xx") == before + 2
