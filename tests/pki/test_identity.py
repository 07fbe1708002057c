"""Project and certificate ID grammars, device subjects, certificate loading."""

from __future__ import annotations

import base64
import hashlib
import logging

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from fleetgate.errors import ChainRejected, InvalidCertificate, InvalidInput, Reason
from fleetgate.pki.identity import (
    DeviceSubject,
    device_subject,
    fingerprint,
    load_certificates,
    read_device_name,
    validate_certificate_id,
    validate_project_id,
)

from .conftest import FixturePki, issue, name

ORG = NameOID.ORGANIZATION_NAME
CN = NameOID.COMMON_NAME


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("acme-sensors", id="ok/slug"),
        pytest.param("a", id="ok/one-char"),
        pytest.param("0day", id="ok/leading-digit"),
        pytest.param("a" * 63, id="ok/63-chars"),
        pytest.param("trailing-", id="ok/trailing-hyphen"),
    ],
)
def test_project_id_valid(value: str) -> None:
    assert validate_project_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="fail/empty"),
        pytest.param("Acme", id="fail/uppercase"),
        pytest.param("-acme", id="fail/leading-hyphen"),
        pytest.param("a" * 64, id="fail/64-chars"),
        pytest.param("acme_sensors", id="fail/underscore"),
        pytest.param("acme sensors", id="fail/space"),
        pytest.param(" acme", id="fail/leading-space"),
        pytest.param("acme\n", id="fail/trailing-newline"),
        pytest.param("acmé", id="fail/non-ascii"),
    ],
)
def test_project_id_invalid(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_project_id(value)

    assert caught.value.message.startswith("cannot use project ID ")
    assert caught.value.reason == Reason.INVALID_INPUT


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("dev-0001", id="ok/slug"),
        pytest.param("AA:BB:CC:DD:EE:FF", id="ok/mac-address"),
        pytest.param("3f2c1e9a-5b7d-4c8e-9f10-2a3b4c5d6e7f", id="ok/uuid"),
        pytest.param("sensor+7@acme.example", id="ok/email-like"),
        pytest.param("SN_000.1", id="ok/serial-number"),
        pytest.param("x", id="ok/one-char"),
        pytest.param("x" * 128, id="ok/128-chars"),
        pytest.param("..", id="ok/dots-only"),
    ],
)
def test_certificate_id_valid(value: str) -> None:
    assert validate_certificate_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="fail/empty"),
        pytest.param("x" * 129, id="fail/129-chars"),
        pytest.param("dev 1", id="fail/space"),
        pytest.param(" dev-1", id="fail/leading-space"),
        pytest.param("dev-1\n", id="fail/trailing-newline"),
        pytest.param("dev/1", id="fail/slash"),
        pytest.param("dev\x001", id="fail/nul"),
        pytest.param("gerät", id="fail/non-ascii"),
        pytest.param("ｄｅｖ", id="fail/fullwidth"),
        pytest.param("dev,1", id="fail/comma"),
    ],
)
def test_certificate_id_invalid(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_certificate_id(value)

    assert caught.value.message.startswith("cannot use certificate ID ")
    assert caught.value.reason == Reason.INVALID_CERTIFICATE_ID


def test_invalid_id_message_truncates_long_value() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_certificate_id("x" * 500)

    assert "xxx..." in caught.value.message
    assert len(caught.value.message) < 200


def test_certificate_id_is_case_sensitive(pki: FixturePki) -> None:
    subject = device_subject(issue(pki.root, name((ORG, "acme"), (CN, "Dev-ABC"))))

    assert subject == DeviceSubject(project_id="acme", certificate_id="Dev-ABC")


def test_fingerprint_is_sha256_of_der(pki: FixturePki) -> None:
    der = pki.root.cert.public_bytes(Encoding.DER)

    assert fingerprint(pki.root.cert) == hashlib.sha256(der).hexdigest()


def test_device_subject_rejection_context(pki: FixturePki) -> None:
    leaf = issue(pki.root, name((ORG, "acme"), (CN, "bad id")))

    with pytest.raises(ChainRejected) as caught:
        device_subject(leaf)

    assert caught.value.reason == Reason.INVALID_CERTIFICATE_ID
    assert caught.value.project_id == "acme"
    assert caught.value.certificate_id is None
    assert caught.value.fingerprint == fingerprint(leaf)


def test_device_subject_ignores_other_attributes(pki: FixturePki) -> None:
    subject = name(
        (NameOID.COUNTRY_NAME, "FR"),
        (ORG, "acme"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Lab"),
        (CN, "dev-1"),
        (NameOID.SERIAL_NUMBER, "1234"),
    )

    assert device_subject(issue(pki.root, subject)).certificate_id == "dev-1"


def test_read_device_name_raises_invalid_input() -> None:
    with pytest.raises(InvalidInput) as caught:
        read_device_name(name((CN, "dev-1"), (CN, "dev-2"), (ORG, "acme")))

    assert caught.value.reason == Reason.BAD_SUBJECT
    assert "2 CN attributes" in caught.value.message


# load_certificates


def test_load_single_pem(pki: FixturePki) -> None:
    pem = pki.root.cert.public_bytes(Encoding.PEM)

    assert load_certificates(pem) == [pki.root.cert]


def test_load_pem_bundle_keeps_order(pki: FixturePki) -> None:
    pem = b"".join(
        cert.public_bytes(Encoding.PEM)
        for cert in (pki.intermediate.cert, pki.root.cert)
    )

    assert load_certificates(pem) == [pki.intermediate.cert, pki.root.cert]


def test_load_pem_with_text_around(pki: FixturePki) -> None:
    pem = b"subject=CN=Root CA\n" + pki.root.cert.public_bytes(Encoding.PEM) + b"\n"

    assert load_certificates(pem) == [pki.root.cert]


def test_load_der(pki: FixturePki) -> None:
    der = pki.root.cert.public_bytes(Encoding.DER)

    assert load_certificates(der) == [pki.root.cert]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(b"", "input is empty", id="fail/empty"),
        pytest.param(b"  \n", "input is empty", id="fail/whitespace"),
        pytest.param(b"hello world", "not a PEM or DER certificate", id="fail/garbage"),
        pytest.param(
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
            "does not contain a valid certificate",
            id="fail/bad-base64",
        ),
    ],
)
def test_load_rejects_invalid_input(payload: bytes, expected: str) -> None:
    with pytest.raises(InvalidCertificate) as caught:
        load_certificates(payload)

    assert expected in caught.value.message
    assert caught.value.reason == Reason.MALFORMED_CERTIFICATE


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x02\x01\x05", id="fail/der-integer"),
        pytest.param(
            b"-----BEGIN CERTIFICATE-----\nAgEF\n-----END CERTIFICATE-----\n",
            id="fail/pem-integer",
        ),
    ],
)
def test_parser_detail_is_logged_not_shown(
    payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fleetgate.pki.identity")

    with pytest.raises(InvalidCertificate) as caught:
        load_certificates(payload)

    assert "ParseError" not in caught.value.message
    assert "ParseError" in caplog.text


def test_load_rejects_truncated_der(pki: FixturePki) -> None:
    der = pki.root.cert.public_bytes(Encoding.DER)

    with pytest.raises(InvalidCertificate, match="not a PEM or DER certificate"):
        load_certificates(der[:-10])


def with_version_2(der: bytes) -> bytes:
    """Return a v3 certificate's DER with its version field set to v2 (1)."""
    # The [0] EXPLICIT version follows the two SEQUENCE headers: A0 03 02 01 02.
    position = der.index(bytes.fromhex("a003020102"))
    return der[: position + 4] + b"\x01" + der[position + 5 :]


@pytest.mark.parametrize("encoding", [Encoding.DER, Encoding.PEM], ids=["der", "pem"])
def test_load_rejects_version_2(pki: FixturePki, encoding: Encoding) -> None:
    der = with_version_2(pki.root.cert.public_bytes(Encoding.DER))
    payload = der
    if encoding is Encoding.PEM:
        body = base64.encodebytes(der)
        payload = (
            b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"
        )

    with pytest.raises(InvalidCertificate) as caught:
        load_certificates(payload)

    assert caught.value.reason == Reason.MALFORMED_CERTIFICATE


def test_load_rejects_der_with_trailing_bytes(pki: FixturePki) -> None:
    der = pki.root.cert.public_bytes(Encoding.DER)

    with pytest.raises(InvalidCertificate):
        load_certificates(der + b"\x00")


def test_load_rejects_truncated_pem(pki: FixturePki) -> None:
    pem = pki.root.cert.public_bytes(Encoding.PEM)

    with pytest.raises(InvalidCertificate, match="does not contain a valid"):
        load_certificates(pem[: len(pem) // 2])


def test_load_rejects_truncated_last_pem_block(pki: FixturePki) -> None:
    pem = pki.intermediate.cert.public_bytes(Encoding.PEM)
    root_pem = pki.root.cert.public_bytes(Encoding.PEM)

    with pytest.raises(InvalidCertificate, match="truncated"):
        load_certificates(pem + root_pem[:100])


def test_load_rejects_private_key_block(pki: FixturePki) -> None:
    key_pem = pki.root.key.private_bytes(
        Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = pki.root.cert.public_bytes(Encoding.PEM) + key_pem

    with pytest.raises(InvalidCertificate, match="not CERTIFICATE"):
        load_certificates(pem)
