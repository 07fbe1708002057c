"""``POST /v1/projects/{id}/explain``."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient

from fleet.pki import ProjectPki
from fleetgate.pki.identity import fingerprint
from fleetgate.store.database import Database

PEM = {"content-type": "application/x-pem-file"}


def _pem(chain: list) -> bytes:
    return b"".join(cert.public_bytes(Encoding.PEM) for cert in chain)


def test_explain_returns_verdict_and_anchor(
    acme: TestClient, database: Database
) -> None:
    pki = ProjectPki(database, create_project=False)
    chain = pki.device("sensor-1", via_intermediate=True)

    response = acme.post("/v1/projects/acme/explain", content=_pem(chain), headers=PEM)

    assert response.status_code == 200
    body = response.json()["data"]
    assert body["accepted"] is True
    assert body["anchor"]["fingerprint"] == fingerprint(pki.root)
    assert body["depth"] == 2
    assert body["association"]["rule"] == "create"


def test_explain_rejected_chain_has_reason(
    acme: TestClient, database: Database
) -> None:
    pki = ProjectPki(database, create_project=False)
    chain = pki.device("sensor-1", project="other")

    response = acme.post("/v1/projects/acme/explain", content=_pem(chain), headers=PEM)

    assert response.status_code == 200
    assert response.json()["data"]["reason"] == "wrong_project"


def test_explain_in_other_project_is_404(acme: TestClient, database: Database) -> None:
    pki = ProjectPki(database, create_project=False)

    response = acme.post(
        "/v1/projects/other/explain", content=_pem(pki.device("s-1")), headers=PEM
    )

    assert response.status_code == 404


def test_explain_without_certificate_is_400(acme: TestClient) -> None:
    response = acme.post("/v1/projects/acme/explain", content=b"", headers=PEM)

    assert response.status_code == 400
