"""``/v1/projects/{id}/certificates``: upload, list, get, enable, delete."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient

from store.certs import SigningCa, make_intermediate, make_root

from .conftest import b64, make_expired_root, make_leaf

CERTS = "/v1/projects/acme/certificates"


@pytest.fixture
def root() -> SigningCa:
    return make_root("Acme Root")


def upload(api: TestClient, body: dict[str, object]) -> dict[str, object]:
    response = api.post(CERTS, json=body)
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()["data"]
    return data


def test_ca_life(acme: TestClient, root: SigningCa, trust_changes: list[str]) -> None:
    created = upload(acme, {"certFile": b64(root.pem), "certType": "root"})
    ca_id = created["id"]
    assert created["certType"] == "root"
    assert created["subject"] == "CN=Acme Root"
    assert created["enabled"] is True
    assert created["source"] == "upload"
    assert len(str(created["fingerprint"])) == 64

    assert acme.get(f"{CERTS}/{ca_id}").json()["data"] == created
    assert acme.get(CERTS).json()["list"] == [created]

    disabled = acme.patch(f"{CERTS}/{ca_id}", json={"enabled": False})
    assert disabled.json()["data"]["enabled"] is False

    deleted = acme.delete(f"{CERTS}/{ca_id}")
    assert deleted.status_code == 200
    assert deleted.json() == {}
    assert acme.get(f"{CERTS}/{ca_id}").status_code == 404
    assert trust_changes == ["acme", "acme", "acme"]


def test_upload_der_without_type_detects_root(
    acme: TestClient, root: SigningCa
) -> None:
    created = upload(acme, {"certFile": b64(root.der)})
    assert created["certType"] == "root"


def test_upload_intermediate(acme: TestClient, root: SigningCa) -> None:
    intermediate = make_intermediate(root)
    body = {"certFile": b64(intermediate.pem), "certType": "intermediate"}
    assert upload(acme, body)["certType"] == "intermediate"


def test_upload_accepts_wrapped_base64(acme: TestClient, root: SigningCa) -> None:
    text = b64(root.pem)
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert upload(acme, {"certFile": wrapped, "certType": "root"})["id"]


def test_certificate_content_fields(acme: TestClient, root: SigningCa) -> None:
    created = upload(acme, {"certFile": b64(root.pem)})
    content = created["certificateContent"]
    assert isinstance(content, dict)
    assert content["publicKeyAlgorithm"] == "ECDSA secp256r1"
    assert content["signatureAlgorithm"] == "ECDSA_WITH_SHA256"
    assert content["version"] == 3
    assert content["keyUsages"] == ["keyCertSign", "crlSign"]
    assert content["serialNumber"] == format(root.certificate.serial_number, "x")


@pytest.mark.parametrize(
    "case, status, code",
    [
        pytest.param("not-base64", 400, "invalid_base64", id="fail/base64"),
        pytest.param("empty", 400, "invalid_base64", id="fail/empty"),
        pytest.param("garbage", 400, "malformed_certificate", id="fail/not-x509"),
        pytest.param("leaf", 400, "not_a_ca", id="fail/not-a-ca"),
        pytest.param(
            "intermediate-as-root", 400, "root_not_self_signed", id="fail/root"
        ),
        pytest.param(
            "root-as-intermediate",
            400,
            "intermediate_self_signed",
            id="fail/intermediate",
        ),
        pytest.param("expired", 400, "ca_expired", id="fail/expired"),
        pytest.param("bad-type", 422, "invalid_request", id="fail/cert-type"),
        pytest.param("no-file", 422, "invalid_request", id="fail/missing-file"),
        pytest.param("too-large", 413, "payload_too_large", id="fail/too-large"),
    ],
)
def test_upload_rejections(
    acme: TestClient,
    root: SigningCa,
    trust_changes: list[str],
    case: str,
    status: int,
    code: str,
) -> None:
    leaf = make_leaf(root).public_bytes(Encoding.PEM)
    bodies: dict[str, dict[str, object]] = {
        "not-base64": {"certFile": "***not base64***"},
        "empty": {"certFile": ""},
        "garbage": {"certFile": b64(b"hello, not a certificate")},
        "leaf": {"certFile": b64(leaf)},
        "intermediate-as-root": {
            "certFile": b64(make_intermediate(root).pem),
            "certType": "root",
        },
        "root-as-intermediate": {"certFile": b64(root.pem), "certType": "intermediate"},
        "expired": {"certFile": b64(make_expired_root().pem)},
        "bad-type": {"certFile": b64(root.pem), "certType": "leaf"},
        "no-file": {"certType": "root"},
        "too-large": {"certFile": b64(root.pem + b" " * (64 * 1024))},
    }
    response = acme.post(CERTS, json=bodies[case])
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert acme.get(CERTS).json()["total"] == 0
    assert trust_changes == []


def test_duplicate_upload_is_409(acme: TestClient, root: SigningCa) -> None:
    upload(acme, {"certFile": b64(root.pem)})
    response = acme.post(CERTS, json={"certFile": b64(root.der)})
    assert response.status_code == 409
    assert response.json()["code"] == "ca_already_registered"


def test_same_ca_in_two_projects(
    acme: TestClient, other: TestClient, root: SigningCa
) -> None:
    upload(acme, {"certFile": b64(root.pem)})
    response = other.post(
        "/v1/projects/other/certificates", json={"certFile": b64(root.pem)}
    )
    assert response.status_code == 200


def test_other_projects_certificate_is_404(
    acme: TestClient, other: TestClient, root: SigningCa
) -> None:
    created = upload(acme, {"certFile": b64(root.pem)})
    path = f"/v1/projects/other/certificates/{created['id']}"
    assert other.get(path).status_code == 404
    assert other.patch(path, json={"enabled": False}).status_code == 404
    assert other.delete(path).status_code == 404
    assert acme.get(f"{CERTS}/{created['id']}").json()["data"]["enabled"] is True


def test_list_pages(acme: TestClient) -> None:
    ids = [
        upload(acme, {"certFile": b64(make_root(f"R{i}").pem)})["id"] for i in range(3)
    ]
    body = acme.get(CERTS, params={"page": 1, "perPage": 2}).json()
    assert [item["id"] for item in body["list"]] == ids[2:]
    assert body["total"] == 3


def test_patch_needs_enabled(acme: TestClient, root: SigningCa) -> None:
    created = upload(acme, {"certFile": b64(root.pem)})
    response = acme.patch(f"{CERTS}/{created['id']}", json={})
    assert response.status_code == 422
