"""The DER helpers that re-sign edited certificates."""

from __future__ import annotations

import pytest
from cryptography import x509

from fleetgate.pki import _der, tools

from .conftest import FixturePki, issue


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        pytest.param(0, "020100", id="ok/zero"),
        pytest.param(1, "020101", id="ok/one"),
        pytest.param(127, "02017f", id="ok/127"),
        pytest.param(128, "02020080", id="ok/128-needs-sign-octet"),
        pytest.param(-1, "0201ff", id="ok/minus-one"),
        pytest.param(-128, "020180", id="ok/minus-128"),
        pytest.param(-129, "0202ff7f", id="ok/minus-129"),
    ],
)
def test_encode_integer(value: int, encoded: str) -> None:
    assert _der.encode_integer(value).hex() == encoded


def test_encode_long_form_length() -> None:
    element = _der.encode(_der.SEQUENCE, b"\x00" * 300)

    assert element[:4].hex() == "3082012c"
    assert len(element) == 304


def test_split_round_trip(pki: FixturePki) -> None:
    tbs = pki.root.cert.tbs_certificate_bytes

    elements = _der.split(tbs)

    assert _der.encode(_der.SEQUENCE, b"".join(elements)) == tbs
    assert elements[0][0] == _der.VERSION_TAG
    assert elements[-1][0] == _der.EXTENSIONS_TAG


def test_split_rejects_truncated_element() -> None:
    with pytest.raises(ValueError, match="truncated"):
        _der.split(bytes.fromhex("3005020105"))


def test_to_version_1_keeps_everything_else(pki: FixturePki) -> None:
    v3 = issue(pki.root)

    v1 = _der.to_version_1(v3, pki.root.key)

    assert v1.version == x509.Version.v1
    assert v1.subject == v3.subject
    assert v1.serial_number == v3.serial_number
    assert v1.public_key() == v3.public_key()
    assert v1.not_valid_after_utc == v3.not_valid_after_utc
    v1.verify_directly_issued_by(pki.root.cert)


def test_to_version_1_rejects_extensions() -> None:
    key, root = tools.make_root()

    with pytest.raises(ValueError, match="extensions"):
        _der.to_version_1(root, key)
