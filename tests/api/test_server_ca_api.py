"""``GET /v1/server-ca``: the root devices must trust, read through the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from fleetgate.api.app import create_app
from fleetgate.forecast import load_server_chain
from fleetgate.gateway.server_identity import (
    ServerIdentity,
    ensure_development_identity,
)
from fleetgate.pki import tools
from fleetgate.store import apikeys
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project


def api_client(database: Database, chain: list[x509.Certificate]) -> TestClient:
    create_project(database, "acme")
    key = apikeys.create_api_key(database, "acme", actor="test")
    app = create_app(database, server_chain=chain)
    return TestClient(
        app, headers={"x-api-key": key.secret}, raise_server_exceptions=False
    )


@pytest.fixture
def identity(tmp_path: Path) -> ServerIdentity:
    return ensure_development_identity(tmp_path / "server-pki")


def served_chain(identity: ServerIdentity) -> list[x509.Certificate]:
    """Return the chain as fleetgate serve hands it to the API."""
    return load_server_chain(identity.credentials.certificate_chain, identity.root_path)


def test_server_ca_is_development_root(
    database: Database, identity: ServerIdentity
) -> None:
    assert identity.root_path is not None
    root = x509.load_pem_x509_certificate(identity.root_path.read_bytes())
    with api_client(database, served_chain(identity)) as client:
        response = client.get("/v1/server-ca")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-pem-file"
    assert x509.load_pem_x509_certificates(response.content) == [root]


def test_chain_without_root_is_not_found(database: Database) -> None:
    key, root = tools.make_root("Operator Root")
    _, intermediate = tools.make_intermediate(key, root, "Operator Intermediate")
    with api_client(database, [intermediate]) as client:
        response = client.get("/v1/server-ca")

    assert response.status_code == 404
    assert "--server-cert" in response.json()["message"]


def test_server_ca_needs_api_key(database: Database, identity: ServerIdentity) -> None:
    with api_client(database, served_chain(identity)) as client:
        response = client.get("/v1/server-ca", headers={"x-api-key": ""})

    assert response.status_code == 401
