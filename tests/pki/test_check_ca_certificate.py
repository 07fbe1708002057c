"""check_ca_certificate: which CA certificates may be registered."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ObjectIdentifier

from fleetgate.errors import InvalidCertificate, Reason
from fleetgate.pki import tools
from fleetgate.pki.verify import check_ca_certificate

from .conftest import (
    ECDSA_WITH_SHA1,
    Ca,
    FixturePki,
    ca_extensions,
    issue,
    key_usage,
    make_ca,
    utcnow,
    with_serial,
    with_signature_algorithm,
)

CertType = Literal["root", "intermediate"]
Build = Callable[[FixturePki], x509.Certificate]


def self_signed(extensions: list[tuple[x509.ExtensionType, bool]]) -> Build:
    def build(pki: FixturePki) -> x509.Certificate:
        return make_ca(None, "Odd Root", extensions=extensions).cert

    return build


def v1_root(pki: FixturePki) -> x509.Certificate:
    # A self-signed X.509 v1 certificate cannot carry basicConstraints.
    key = ec.generate_private_key(ec.SECP256R1())
    placeholder = make_ca(None, "V1 Root", key=key)
    return issue(Ca(key, placeholder.cert), placeholder.cert.subject, key=key, v1=True)


def weak_key_root(pki: FixturePki) -> x509.Certificate:
    return make_ca(None, "Weak Root", key=rsa.generate_private_key(65537, 1024)).cert


def sha1_root(pki: FixturePki) -> x509.Certificate:
    root = make_ca(None, "SHA-1 Root")
    return with_signature_algorithm(root.cert, ECDSA_WITH_SHA1, hashes.SHA1(), root)


def zero_serial_root(pki: FixturePki) -> x509.Certificate:
    root = make_ca(None, "Zero Serial Root")
    return with_serial(root.cert, 0, root)


def bad_self_signature(pki: FixturePki) -> x509.Certificate:
    # Same subject and issuer, but signed by an unrelated key.
    other = make_ca(None, "Rollover Root")
    key = ec.generate_private_key(ec.SECP256R1())
    return issue(other, other.cert.subject, key=key, extensions=ca_extensions())


def expired_root(pki: FixturePki) -> x509.Certificate:
    now = utcnow()
    return make_ca(
        None,
        "Expired Root",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(seconds=1),
    ).cert


def intermediate(pki: FixturePki) -> x509.Certificate:
    return pki.intermediate.cert


def root(pki: FixturePki) -> x509.Certificate:
    return pki.root.cert


UNKNOWN = x509.UnrecognizedExtension(
    ObjectIdentifier("1.3.6.1.4.1.55555.2"), b"\x05\x00"
)
NO_BASIC_CONSTRAINTS = [(key_usage(key_cert_sign=True, digital_signature=False), True)]
NOT_CA = [(x509.BasicConstraints(ca=False, path_length=None), True)]
NO_CERT_SIGN = [
    (x509.BasicConstraints(ca=True, path_length=None), True),
    (key_usage(key_cert_sign=False, digital_signature=True), True),
]


@pytest.mark.parametrize(
    ("build", "cert_type"),
    [
        pytest.param(root, "root", id="ok/root"),
        pytest.param(intermediate, "intermediate", id="ok/intermediate"),
        pytest.param(
            lambda pki: tools.make_root("Ed Root", "ed25519")[1],
            "root",
            id="ok/ed25519-root",
        ),
        pytest.param(
            lambda pki: (
                make_ca(
                    None, "Future Root", not_before=utcnow() + dt.timedelta(days=2)
                ).cert
            ),
            "root",
            id="ok/not-yet-valid-root",
        ),
    ],
)
def test_ca_certificate_accepted(
    build: Build, cert_type: CertType, pki: FixturePki
) -> None:
    check_ca_certificate(build(pki), cert_type=cert_type)


@pytest.mark.parametrize(
    ("build", "cert_type", "reason"),
    [
        pytest.param(v1_root, "root", Reason.V1_NOT_ALLOWED, id="fail/v1-root"),
        pytest.param(
            self_signed(NO_BASIC_CONSTRAINTS),
            "root",
            Reason.NOT_A_CA,
            id="fail/no-basic-constraints",
        ),
        pytest.param(self_signed(NOT_CA), "root", Reason.NOT_A_CA, id="fail/ca-false"),
        pytest.param(
            self_signed(NO_CERT_SIGN),
            "root",
            Reason.BAD_KEY_USAGE,
            id="fail/key-usage-without-cert-sign",
        ),
        pytest.param(
            self_signed([*ca_extensions(), (UNKNOWN, True)]),
            "root",
            Reason.UNHANDLED_CRITICAL_EXTENSION,
            id="fail/unknown-critical-extension",
        ),
        pytest.param(weak_key_root, "root", Reason.WEAK_KEY, id="fail/rsa1024-key"),
        pytest.param(sha1_root, "root", Reason.WEAK_SIGNATURE, id="fail/sha1-root"),
        pytest.param(
            zero_serial_root, "root", Reason.BAD_SERIAL, id="fail/zero-serial"
        ),
        pytest.param(
            intermediate,
            "root",
            Reason.ROOT_NOT_SELF_SIGNED,
            id="fail/intermediate-as-root",
        ),
        pytest.param(
            bad_self_signature,
            "root",
            Reason.BAD_SIGNATURE,
            id="fail/root-bad-self-signature",
        ),
        pytest.param(
            root,
            "intermediate",
            Reason.INTERMEDIATE_SELF_SIGNED,
            id="fail/root-as-intermediate",
        ),
        pytest.param(expired_root, "root", Reason.CA_EXPIRED, id="fail/expired"),
    ],
)
@pytest.mark.filterwarnings("ignore:Parsed a serial number:UserWarning")
def test_ca_certificate_rejected(
    build: Build, cert_type: CertType, reason: Reason, pki: FixturePki
) -> None:
    with pytest.raises(InvalidCertificate) as caught:
        check_ca_certificate(build(pki), cert_type=cert_type)

    assert caught.value.reason == reason, caught.value.message
    assert caught.value.message.startswith("cannot use CA certificate: ")


def v1_leaf(pki: FixturePki) -> x509.Certificate:
    # What the openssl recipe makes for a device.
    return issue(pki.root, v1=True)


def v3_leaf(pki: FixturePki) -> x509.Certificate:
    return issue(pki.root, extensions=NOT_CA)


def v3_leaf_without_constraints(pki: FixturePki) -> x509.Certificate:
    return issue(pki.root)


@pytest.mark.parametrize(
    ("build", "shape"),
    [
        pytest.param(v1_leaf, "it is X.509 v1", id="fail/v1-leaf"),
        pytest.param(v3_leaf, "basicConstraints say CA:FALSE", id="fail/v3-leaf"),
        pytest.param(
            v3_leaf_without_constraints,
            "no basicConstraints extension",
            id="fail/v3-leaf-without-constraints",
        ),
    ],
)
@pytest.mark.parametrize("cert_type", ["root", "intermediate"])
def test_leaf_is_not_a_ca_certificate(
    build: Build, shape: str, cert_type: CertType, pki: FixturePki
) -> None:
    with pytest.raises(InvalidCertificate) as caught:
        check_ca_certificate(build(pki), cert_type=cert_type)

    message = caught.value.message
    assert caught.value.reason == Reason.NOT_A_CA
    assert "'CN=dev-0001,O=acme-sensors' is not a CA certificate, because" in message
    assert shape in message
    assert f"{cert_type} certificate" not in message
    assert "use the CA certificate that issued it" in message


def test_ca_certificate_expiry_uses_now(pki: FixturePki) -> None:
    later = pki.root.cert.not_valid_after_utc + dt.timedelta(seconds=1)

    with pytest.raises(InvalidCertificate) as caught:
        check_ca_certificate(pki.root.cert, cert_type="root", now=later)

    assert caught.value.reason == Reason.CA_EXPIRED


def test_ca_certificate_unknown_type(pki: FixturePki) -> None:
    with pytest.raises(ValueError, match="cert_type"):
        check_ca_certificate(pki.root.cert, cert_type="leaf")  # type: ignore[arg-type]
