"""Request body decoding for device-facing resources."""

from __future__ import annotations

import pytest

from fleetgate.errors import InvalidInput
from fleetgate.gateway.resources import CBOR, JSON, decode_body


@pytest.mark.parametrize(
    ("payload", "content_format"),
    [
        pytest.param(b"{", JSON, id="fail/truncated-json"),
        pytest.param(b"\xff", JSON, id="fail/not-utf8"),
        pytest.param(b"1" * 5000, JSON, id="fail/int-beyond-digit-limit"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, JSON, id="fail/deep-json"),
        pytest.param(b"\xa1\x01\x02", CBOR, id="fail/cbor-integer-key"),
        pytest.param(b"\x5f", CBOR, id="fail/truncated-cbor"),
        pytest.param(b"{}x", JSON, id="fail/json-trailing-bytes"),
        pytest.param(b"\xa0\x00", CBOR, id="fail/cbor-trailing-bytes"),
    ],
)
def test_bad_body_is_invalid_input(payload: bytes, content_format: int) -> None:
    with pytest.raises(InvalidInput, match="cannot"):
        decode_body(payload, content_format)


def test_trailing_cbor_bytes_are_counted() -> None:
    with pytest.raises(InvalidInput, match="3 bytes follow the CBOR item"):
        decode_body(b"\xa0abc", CBOR)


def test_missing_content_format_means_json() -> None:
    assert decode_body(b'{"a":[1,2]}', None) == {"a": [1, 2]}
