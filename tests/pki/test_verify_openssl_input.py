"""Malformed certificates reach the verifier as rejections, not exceptions."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import crypto

from fleetgate.errors import ChainRejected, Reason
from fleetgate.pki import tools
from fleetgate.pki.verify import ChainVerifier, ProjectTrust


class NoProjects:
    def anchors_for(self, project_id: str) -> ProjectTrust | None:
        return None


def with_version_2(der: bytes) -> bytes:
    """Return a v3 certificate's DER with its version field set to v2 (1)."""
    position = der.index(bytes.fromhex("a003020102"))
    return der[: position + 4] + b"\x01" + der[position + 5 :]


def test_version_2_leaf_is_malformed() -> None:
    root_key, root = tools.make_root()
    key = tools.make_device_key()
    csr = tools.make_device_csr(key, "acme", "sensor-1")
    leaf = tools.sign_device_csr(csr, root_key, root, version="v3")
    der = with_version_2(leaf.public_bytes(Encoding.DER))
    openssl_leaf = crypto.load_certificate(crypto.FILETYPE_ASN1, der)

    with pytest.raises(ChainRejected) as caught:
        ChainVerifier(NoProjects()).verify_openssl([openssl_leaf])

    assert caught.value.reason == Reason.MALFORMED_CERTIFICATE


def test_bit_string_common_name_is_malformed() -> None:
    root_key, root = tools.make_root()
    key = tools.make_device_key()
    csr = tools.make_device_csr(key, "acme", "dev-fuzz")
    leaf = tools.sign_device_csr(csr, root_key, root, version="v3")
    der = leaf.public_bytes(Encoding.DER)
    # Re-tag the CN's UTF8String (0x0c) as a BIT STRING (0x03).
    mangled = der.replace(b"\x0c\x08dev-fuzz", b"\x03\x08dev-fuzz")
    assert mangled != der
    # OpenSSL refuses to parse this, but cryptography loads it lazily.
    parsed = x509.load_der_x509_certificate(mangled)

    with pytest.raises(ChainRejected) as caught:
        ChainVerifier(NoProjects()).verify(parsed)

    assert caught.value.reason == Reason.MALFORMED_CERTIFICATE
