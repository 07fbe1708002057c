"""``PUT/GET /v1/projects/{id}/certificates/{certId}/crl``: a CA's CRL."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient

from store.certs import SigningCa, make_crl, make_root

from .conftest import b64

CERTS = "/v1/projects/acme/certificates"


@pytest.fixture
def root() -> SigningCa:
    return make_root("Acme Root")


@pytest.fixture
def ca_id(acme: TestClient, root: SigningCa) -> str:
    response = acme.post(CERTS, json={"certFile": b64(root.pem)})
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["id"])


@pytest.mark.parametrize("encoding", [Encoding.PEM, Encoding.DER], ids=str)
def test_crl_loaded(
    acme: TestClient,
    root: SigningCa,
    ca_id: str,
    trust_changes: list[str],
    encoding: Encoding,
) -> None:
    trust_changes.clear()
    crl = make_crl(root, (10, 11, 12), number=7)

    response = acme.put(
        f"{CERTS}/{ca_id}/crl", json={"crlFile": b64(crl.public_bytes(encoding))}
    )

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["certificateId"] == ca_id
    assert data["revokedCount"] == 3
    assert data["crlNumber"] == "7"
    assert data["expired"] is False
    assert trust_changes == ["acme"]
    assert acme.get(f"{CERTS}/{ca_id}/crl").json()["data"] == data


def test_expired_crl_flagged(acme: TestClient, root: SigningCa, ca_id: str) -> None:
    crl = make_crl(root, (1,), next_update=-dt.timedelta(hours=1))

    response = acme.put(
        f"{CERTS}/{ca_id}/crl", json={"crlFile": b64(crl.public_bytes(Encoding.DER))}
    )

    assert response.status_code == 200
    assert response.json()["data"]["expired"] is True


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"crlFile": "not base64!"}, "invalid_base64", id="fail/base64"),
        pytest.param({"crlFile": b64(b"\x30\x00")}, "malformed_crl", id="fail/der"),
        pytest.param(
            {"crlFile": b64(make_crl(make_root("Other")).public_bytes(Encoding.PEM))},
            "crl_not_from_ca",
            id="fail/other-ca",
        ),
    ],
)
def test_bad_crl_rejected(
    acme: TestClient, ca_id: str, body: dict[str, str], code: str
) -> None:
    response = acme.put(f"{CERTS}/{ca_id}/crl", json=body)

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert acme.get(f"{CERTS}/{ca_id}/crl").status_code == 404


def test_crl_for_unknown_ca_404(acme: TestClient, root: SigningCa) -> None:
    crl = make_crl(root).public_bytes(Encoding.DER)

    response = acme.put(f"{CERTS}/{'0' * 24}/crl", json={"crlFile": b64(crl)})

    assert response.status_code == 404


def test_other_project_key_404(other: TestClient, root: SigningCa, ca_id: str) -> None:
    crl = make_crl(root).public_bytes(Encoding.DER)

    response = other.put(f"{CERTS}/{ca_id}/crl", json={"crlFile": b64(crl)})

    assert response.status_code == 404
