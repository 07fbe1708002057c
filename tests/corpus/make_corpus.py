"""Build the bad-input certificate corpus that ``cases.toml`` describes.

Each case is one PEM file (the device's chain, leaf first) and, when the
chain can be loaded, the leaf's private key next to it, so that the same
case runs through :class:`~fleetgate.pki.verify.ChainVerifier` and
through a real DTLS handshake. The anchors to register are written to
``anchors/<project>.pem``.

The files are generated at test time rather than committed. Validity
periods are then relative to the run, so a "future" notBefore stays in
the future and an expired intermediate is expired by days. No private
key is committed either. Run it by hand to
look at the files::

    python tests/corpus/make_corpus.py /tmp/corpus
"""

from __future__ import annotations

import datetime as dt
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

from fleetgate.pki import _der, tools

PROJECT_A = "corpus-a"
PROJECT_B = "corpus-b"
# The certificate ID both string encodings of one name carry.
SAME_NAME = "dev-same-name"

# ecdsa-with-SHA1 AlgorithmIdentifier (RFC 5758, section 3.2), which
# pyca/cryptography 50 refuses to sign with.
ECDSA_WITH_SHA1 = bytes.fromhex("300906072a8648ce3d0401")
# A private-enterprise OID that no verifier recognizes.
UNKNOWN_OID = ObjectIdentifier("1.3.6.1.4.1.55555.7.1")
# Padding per intermediate of the large chains: three of them and the
# leaf exceed 64 KiB, or OpenSSL's 100 KiB limit on a certificate list.
PADDING_64K = 22_000
PADDING_128K = 44_000

AnyKey = tools.PrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Ca:
    """A CA key and certificate."""

    key: tools.PrivateKey
    cert: x509.Certificate


@dataclass(frozen=True)
class Case:
    """What one case writes: the chain (leaf first) and the leaf's key."""

    chain: Sequence[x509.Certificate]
    key: AnyKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def subject(
    *attributes: tuple[x509.ObjectIdentifier, str] | x509.NameAttribute,
) -> x509.Name:
    """Return a Name of one RDN per attribute, without length checks."""
    built = []
    for attribute in attributes:
        if isinstance(attribute, x509.NameAttribute):
            built.append(attribute)
        else:
            oid, value = attribute
            # Empty and over-long CNs are the point of some cases, so the
            # warning cryptography emits about their length is silenced.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                built.append(x509.NameAttribute(oid, value, _validate=False))
    return x509.Name(built)


def device(certificate_id: str, project_id: str = PROJECT_A) -> x509.Name:
    """Return the subject O=<project ID>, CN=<certificate ID>."""
    return subject(
        (NameOID.ORGANIZATION_NAME, project_id), (NameOID.COMMON_NAME, certificate_id)
    )


def _hash_for(key: tools.PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def certificate(
    issuer: Ca | None,
    name: x509.Name,
    key: AnyKey,
    *,
    ca: bool | None = None,
    path_length: int | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """Sign a certificate. ``ca`` adds basicConstraints and keyUsage."""
    start = not_before or _now() - dt.timedelta(hours=1)
    signer = issuer.key if issuer else key
    assert not isinstance(signer, rsa.RSAPrivateKey) or signer.key_size >= 2048
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(tools.random_serial())
        .not_valid_before(start)
        .not_valid_after(not_after or start + dt.timedelta(days=3650))
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length), critical=True
        )
    if ca:
        builder = builder.add_extension(_cert_sign_usage(), critical=True)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, _hash_for(signer))  # type: ignore[arg-type]


def _cert_sign_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(issuer: Ca | None, common_name: str, **options: object) -> Ca:
    """Return a v3 CA (basicConstraints CA:TRUE) under ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    options.setdefault("ca", True)
    cert = certificate(
        issuer,
        subject((NameOID.COMMON_NAME, common_name)),
        key,
        **options,  # type: ignore[arg-type]
    )
    return Ca(key, cert)


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def with_serial(cert: x509.Certificate, serial: int, issuer: Ca) -> x509.Certificate:
    """Return ``cert`` with any serial number, signed again by ``issuer``."""
    elements = _der.split(cert.tbs_certificate_bytes)
    elements[1] = _der.encode_integer(serial)  # v3: [0] version comes first
    return _der.resign(cert, elements, issuer.key)


def with_sha1(cert: x509.Certificate, issuer: Ca) -> x509.Certificate:
    """Return ``cert`` signed again by ``issuer`` with ECDSA and SHA-1."""
    elements = _der.split(cert.tbs_certificate_bytes)
    elements[2] = ECDSA_WITH_SHA1  # TBSCertificate.signature
    return _der.sign_tbs(elements, ECDSA_WITH_SHA1, issuer.key, hashes.SHA1())


class Corpus:
    """The CAs every case shares, and one builder per case."""

    def __init__(self) -> None:
        # The roots predate the expired intermediate, so that the case can
        # also be verified at a time when the intermediate was valid.
        since = _now() - dt.timedelta(days=365)
        self.root_a = make_ca(None, "Corpus Root A", not_before=since)
        self.root_b = make_ca(None, "Corpus Root B", not_before=since)

    def leaf(self, name: x509.Name, **options: object) -> Case:
        """Issue a v3 leaf under root A with a fresh P-256 key."""
        key = _p256()
        cert = certificate(self.root_a, name, key, **options)  # type: ignore[arg-type]
        return Case([cert], key)

    def builders(self) -> dict[str, Callable[[], Case | bytes]]:
        """Map each file stem to the function that builds its content."""
        return {
            "p256-v1": self.p256_v1,
            "ed25519": self.ed25519,
            "utf8string-cn": lambda: self.encoded_cn(_ASN1Type.UTF8String),
            "bmpstring-cn": lambda: self.encoded_cn(_ASN1Type.BMPString),
            "malformed-der": self.malformed_der,
            "truncated-pem": self.truncated_pem,
            "two-o": lambda: self.leaf(
                subject(
                    (NameOID.ORGANIZATION_NAME, PROJECT_A),
                    (NameOID.ORGANIZATION_NAME, PROJECT_A),
                    (NameOID.COMMON_NAME, "dev-two-o"),
                )
            ),
            "two-cn": lambda: self.leaf(
                subject(
                    (NameOID.ORGANIZATION_NAME, PROJECT_A),
                    (NameOID.COMMON_NAME, "dev-two-cn"),
                    (NameOID.COMMON_NAME, "dev-two-cn-again"),
                )
            ),
            "empty-cn": lambda: self.leaf(device("")),
            "cn-spaces": lambda: self.leaf(device("dev with spaces")),
            "cn-control": lambda: self.leaf(device("dev-\x07\r\n-ctl")),
            "cn-non-ascii": lambda: self.leaf(device("dev-\u00e9t\u00e9-\u4e2d")),
            "cn-1000": lambda: self.leaf(device("d" * 1000)),
            "leaf-is-ca": lambda: self.leaf(device("dev-leaf-is-ca"), ca=True),
            "ca-without-basic-constraints": self.ca_without_basic_constraints,
            "path-length-violated": self.path_length_violated,
            "name-constraints-violated": self.name_constraints_violated,
            "unknown-critical-extension": lambda: self.leaf(
                device("dev-unknown-critical"),
                extensions=[
                    (x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), True)
                ],
            ),
            "negative-serial": lambda: self.reissued_with_serial(
                -4242, "dev-negative-serial"
            ),
            "serial-30-bytes": lambda: self.reissued_with_serial(
                int.from_bytes(b"\x51" * 30, "big"), "dev-serial-30-bytes"
            ),
            "not-before-future": lambda: self.leaf(
                device("dev-not-before-future"),
                not_before=_now() + dt.timedelta(days=1),
            ),
            "expired-intermediate": self.expired_intermediate,
            "chain-of-10": self.chain_of_10,
            "chain-64k": lambda: self.padded_chain("64k", PADDING_64K),
            "chain-128k": lambda: self.padded_chain("128k", PADDING_128K),
            "rsa-1024": self.rsa_1024,
            "sha1": self.sha1,
            "project-a-ca-names-project-b": lambda: self.leaf(
                device("dev-cross-project", PROJECT_B)
            ),
        }

    def p256_v1(self) -> Case:
        key = _p256()
        cert = certificate(self.root_a, device("dev-p256-v1"), key)
        return Case([_der.to_version_1(cert, self.root_a.key)], key)

    def ed25519(self) -> Case:
        key = ed25519.Ed25519PrivateKey.generate()
        return Case([certificate(self.root_a, device("dev-ed25519"), key)], key)

    def encoded_cn(self, string_type: _ASN1Type) -> Case:
        name = subject(
            (NameOID.ORGANIZATION_NAME, PROJECT_A),
            x509.NameAttribute(NameOID.COMMON_NAME, SAME_NAME, _type=string_type),
        )
        return self.leaf(name)

    def malformed_der(self) -> bytes:
        der = bytearray(
            self.leaf(device("dev-malformed")).chain[0].public_bytes(Encoding.DER)
        )
        # The outer SEQUENCE has a two-byte length, so the TBSCertificate
        # tag is at offset 4. An OCTET STRING there is not a certificate.
        der[4] = 0x04
        return bytes(der)

    def truncated_pem(self) -> bytes:
        pem = self.leaf(device("dev-truncated")).chain[0].public_bytes(Encoding.PEM)
        return pem[: len(pem) // 2]

    def ca_without_basic_constraints(self) -> Case:
        # keyUsage keyCertSign alone, which OpenSSL outside strict mode
        # takes for a CA.
        intermediate = make_ca(
            self.root_a,
            "Corpus No BC",
            ca=None,
            extensions=[(_cert_sign_usage(), True)],
        )
        key = _p256()
        leaf = certificate(intermediate, device("dev-no-bc"), key)
        return Case([leaf, intermediate.cert], key)

    def path_length_violated(self) -> Case:
        first = make_ca(self.root_a, "Corpus PathLen 0", path_length=0)
        second = make_ca(first, "Corpus Below PathLen 0")
        key = _p256()
        leaf = certificate(second, device("dev-path-length"), key)
        return Case([leaf, second.cert, first.cert], key)

    def name_constraints_violated(self) -> Case:
        permitted = x509.DirectoryName(subject((NameOID.ORGANIZATION_NAME, PROJECT_B)))
        constraints = x509.NameConstraints(
            permitted_subtrees=[permitted], excluded_subtrees=None
        )
        intermediate = make_ca(
            self.root_a, "Corpus Constrained", extensions=[(constraints, True)]
        )
        key = _p256()
        leaf = certificate(intermediate, device("dev-name-constraints"), key)
        return Case([leaf, intermediate.cert], key)

    def reissued_with_serial(self, serial: int, certificate_id: str) -> Case:
        case = self.leaf(device(certificate_id))
        return Case([with_serial(case.chain[0], serial, self.root_a)], case.key)

    def expired_intermediate(self) -> Case:
        start = _now() - dt.timedelta(days=40)
        intermediate = make_ca(
            self.root_a,
            "Corpus Expired",
            not_before=start,
            not_after=start + dt.timedelta(days=30),
        )
        key = _p256()
        # Issued while the intermediate was valid, and valid itself today.
        leaf = certificate(
            intermediate, device("dev-expired-intermediate"), key, not_before=start
        )
        return Case([leaf, intermediate.cert], key)

    def chain_of_10(self) -> Case:
        issuer = self.root_a
        sent = []
        for index in range(8):
            issuer = make_ca(issuer, f"Corpus Depth {index + 1}")
            sent.insert(0, issuer.cert)
        key = _p256()
        leaf = certificate(issuer, device("dev-chain-of-10"), key)
        return Case([leaf, *sent, self.root_a.cert], key)

    def padded_chain(self, label: str, padding_bytes: int) -> Case:
        padding = (
            x509.UnrecognizedExtension(
                UNKNOWN_OID, _der.encode(0x04, b"\x00" * padding_bytes)
            ),
            False,
        )
        issuer = self.root_a
        sent = []
        for index in range(3):
            issuer = make_ca(issuer, f"Corpus Large {index + 1}", extensions=[padding])
            sent.insert(0, issuer.cert)
        key = _p256()
        leaf = certificate(issuer, device(f"dev-chain-{label}"), key)
        return Case([leaf, *sent], key)

    def rsa_1024(self) -> Case:
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        return Case([certificate(self.root_a, device("dev-rsa-1024"), key)], key)

    def sha1(self) -> Case:
        case = self.leaf(device("dev-sha1"))
        return Case([with_sha1(case.chain[0], self.root_a)], case.key)


def write_corpus(folder: Path) -> None:
    """Write every case and the two projects' anchors into ``folder``."""
    corpus = Corpus()
    anchors = folder / "anchors"
    anchors.mkdir(parents=True, exist_ok=True)
    for project_id, ca in ((PROJECT_A, corpus.root_a), (PROJECT_B, corpus.root_b)):
        (anchors / f"{project_id}.pem").write_bytes(ca.cert.public_bytes(Encoding.PEM))

    for stem, build in corpus.builders().items():
        built = build()
        if isinstance(built, bytes):
            suffix = ".der" if stem.endswith("-der") else ".pem"
            (folder / f"{stem}{suffix}").write_bytes(built)
            continue
        pem = b"".join(cert.public_bytes(Encoding.PEM) for cert in built.chain)
        (folder / f"{stem}.pem").write_bytes(pem)
        key_pem = built.key.private_bytes(
            Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (folder / f"{stem}.key").write_bytes(key_pem)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTPUT_DIR")
    write_corpus(Path(sys.argv[1]))
