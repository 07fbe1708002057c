"""The management API in-process, on each database backend under test.

``client`` has no key; ``admin``, ``acme`` and ``other`` send an admin
key and keys of projects ``acme`` and ``other``. Every CA change the
API reports to the trust hook is recorded in ``trust_changes``.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetgate.api.app import create_app
from fleetgate.store import apikeys
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project
from store.certs import SigningCa


@pytest.fixture
def trust_changes() -> list[str]:
    return []


@pytest.fixture
def app(database: Database, trust_changes: list[str]) -> FastAPI:
    create_project(database, "acme")
    create_project(database, "other")
    return create_app(database, trust_changed=trust_changes.append)


def _client(app: FastAPI, key: str | None) -> Iterator[TestClient]:
    headers = {} if key is None else {"x-api-key": key}
    with TestClient(app, headers=headers, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    yield from _client(app, None)


@pytest.fixture
def admin_key(database: Database) -> apikeys.IssuedApiKey:
    return apikeys.create_api_key(database, None, actor="test")


@pytest.fixture
def acme_key(database: Database) -> apikeys.IssuedApiKey:
    return apikeys.create_api_key(database, "acme", actor="test")


@pytest.fixture
def admin(app: FastAPI, admin_key: apikeys.IssuedApiKey) -> Iterator[TestClient]:
    yield from _client(app, admin_key.secret)


@pytest.fixture
def acme(app: FastAPI, acme_key: apikeys.IssuedApiKey) -> Iterator[TestClient]:
    yield from _client(app, acme_key.secret)


@pytest.fixture
def other(app: FastAPI, database: Database) -> Iterator[TestClient]:
    key = apikeys.create_api_key(database, "other", actor="test")
    yield from _client(app, key.secret)


def b64(data: bytes) -> str:
    """Encode bytes as the standard base64 text of a certFile."""
    return base64.b64encode(data).decode()


def make_leaf(issuer: SigningCa, common_name: str = "sensor-1") -> x509.Certificate:
    """Sign a device certificate, which is not a CA, with ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acme"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .sign(issuer.key, hashes.SHA256())
    )


def make_expired_root() -> SigningCa:
    """Create a self-signed P-256 root CA that expired yesterday."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Expired Root")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return SigningCa(certificate, key)
