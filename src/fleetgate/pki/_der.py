"""Just enough DER to re-sign an edited TBSCertificate.

pyca/cryptography's ``CertificateBuilder`` always writes X.509 v3 and
only positive serial numbers. The documented openssl recipe issues v1
device certificates, so the CA kit builds a v3 certificate without
extensions, removes the version field and signs the result again. The
tests use the same helpers to build certificates that no builder writes.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03
# TBSCertificate ``version [0] EXPLICIT`` (RFC 5280, section 4.1.2.1).
VERSION_TAG = 0xA0
# TBSCertificate ``extensions [3] EXPLICIT`` (RFC 5280, section 4.1.2.9).
EXTENSIONS_TAG = 0xA3

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def encode(tag: int, content: bytes) -> bytes:
    """Return one DER element: tag, definite length, content."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def encode_integer(value: int) -> bytes:
    """Return a DER INTEGER in two's complement, negative values included."""
    size = (value + (value < 0)).bit_length() // 8 + 1
    return encode(INTEGER, value.to_bytes(size, "big", signed=True))


def split(der: bytes) -> list[bytes]:
    """Return the whole-element encodings inside one constructed element."""
    content = _content(der)
    elements = []
    offset = 0
    while offset < len(content):
        end = offset + _element_size(content, offset)
        elements.append(content[offset:end])
        offset = end
    return elements


def _element_size(data: bytes, offset: int) -> int:
    first = data[offset + 1]
    if first < 0x80:
        size = 2 + first
    else:
        count = first & 0x7F
        length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
        size = 2 + count + length
    if offset + size > len(data):
        raise ValueError("truncated DER element")
    return size


def _content(der: bytes) -> bytes:
    first = der[1]
    header = 2 if first < 0x80 else 2 + (first & 0x7F)
    return der[header : _element_size(der, 0)]


def sign_tbs(
    tbs_elements: list[bytes],
    signature_algorithm: bytes,
    issuer_key: SigningKey,
    hash_algorithm: hashes.HashAlgorithm | None,
) -> x509.Certificate:
    """Sign a TBSCertificate made of ``tbs_elements`` and load the result.

    ``signature_algorithm`` is the encoded AlgorithmIdentifier, which must
    already be the one inside ``tbs_elements`` (RFC 5280, section 4.1.1.2).
    """
    tbs = encode(SEQUENCE, b"".join(tbs_elements))
    if isinstance(issuer_key, ed25519.Ed25519PrivateKey):
        signature = issuer_key.sign(tbs)
    elif hash_algorithm is None:
        raise ValueError("an ECDSA or RSA signature needs a hash algorithm")
    elif isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        signature = issuer_key.sign(tbs, ec.ECDSA(hash_algorithm))
    else:
        signature = issuer_key.sign(tbs, padding.PKCS1v15(), hash_algorithm)

    bit_string = encode(BIT_STRING, b"\x00" + signature)
    der = encode(SEQUENCE, tbs + signature_algorithm + bit_string)
    return x509.load_der_x509_certificate(der)


def resign(
    cert: x509.Certificate,
    tbs_elements: list[bytes],
    issuer_key: SigningKey,
) -> x509.Certificate:
    """Sign edited TBSCertificate elements with the algorithm ``cert`` used."""
    signature_algorithm = split(cert.public_bytes(Encoding.DER))[1]
    return sign_tbs(
        tbs_elements, signature_algorithm, issuer_key, cert.signature_hash_algorithm
    )


def to_version_1(cert: x509.Certificate, issuer_key: SigningKey) -> x509.Certificate:
    """Return ``cert`` re-signed as X.509 v1; it must have no extensions."""
    elements = split(cert.tbs_certificate_bytes)
    if any(element[0] == EXTENSIONS_TAG for element in elements):
        raise ValueError("cannot make a v1 certificate with extensions")
    if elements[0][0] == VERSION_TAG:
        # v1 is the DEFAULT, which DER encodes by leaving the field out.
        elements = elements[1:]
    return resign(cert, elements, issuer_key)
