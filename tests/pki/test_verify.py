"""ChainVerifier: the matrix of accepted and rejected device chains."""

from __future__ import annotations

import datetime as dt
import logging
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from fleetgate.errors import ChainRejected, Reason
from fleetgate.pki import tools
from fleetgate.pki.identity import fingerprint, load_certificates
from fleetgate.pki.verify import (
    Anchor,
    ChainVerifier,
    ProjectTrust,
    VerificationPolicy,
    VerifiedDevice,
)

from .conftest import (
    CERTIFICATE_ID,
    ECDSA_WITH_SHA1,
    OTHER_PROJECT,
    PROJECT,
    RSA_WITH_MD5,
    Ca,
    FixturePki,
    StaticSource,
    ca_extensions,
    device_name,
    issue,
    key_usage,
    make_ca,
    name,
    utcnow,
    with_broken_signature,
    with_serial,
    with_signature_algorithm,
)

UNKNOWN_OID = ObjectIdentifier("1.3.6.1.4.1.55555.1.1")
SKEW = VerificationPolicy().clock_skew


@dataclass
class Chain:
    """A leaf, what the device sends with it, and the project's anchors."""

    leaf: x509.Certificate
    anchors: list[x509.Certificate]
    untrusted: list[x509.Certificate] = field(default_factory=list)
    policy: VerificationPolicy = field(default_factory=VerificationPolicy)
    # Anchors of OTHER_PROJECT, for the cases that cross projects.
    other_anchors: list[x509.Certificate] = field(default_factory=list)
    now: dt.datetime | None = None


def run(chain: Chain) -> VerifiedDevice:
    """Verify ``chain`` with a fresh verifier."""
    source = StaticSource()
    source.register(PROJECT, chain.anchors, chain.policy)
    if chain.other_anchors:
        source.register(OTHER_PROJECT, chain.other_anchors)
    return ChainVerifier(source).verify(chain.leaf, chain.untrusted, now=chain.now)


def chain_of(length: int, pki: FixturePki) -> tuple[Ca, list[Ca]]:
    """Return the issuing CA and ``length`` intermediates below the root."""
    issuer = pki.root
    intermediates = []
    for index in range(length):
        issuer = make_ca(issuer, f"Intermediate {index}")
        intermediates.append(issuer)
    return issuer, intermediates


# Accepted chains.


def root_anchor(pki: FixturePki) -> Chain:
    return Chain(issue(pki.root, v1=True), [pki.root.cert])


def intermediate_anchor(pki: FixturePki) -> Chain:
    return Chain(issue(pki.intermediate, v1=True), [pki.intermediate.cert])


def root_anchor_intermediate_sent(pki: FixturePki) -> Chain:
    leaf = issue(pki.intermediate, v1=True)
    return Chain(leaf, [pki.root.cert], untrusted=[pki.intermediate.cert])


def root_and_intermediate_registered(pki: FixturePki) -> Chain:
    leaf = issue(pki.intermediate, v1=True)
    return Chain(leaf, [pki.root.cert, pki.intermediate.cert])


def device_sends_registered_root(pki: FixturePki) -> Chain:
    leaf = issue(pki.intermediate, v1=True)
    untrusted = [pki.intermediate.cert, pki.root.cert]
    return Chain(leaf, [pki.root.cert], untrusted=untrusted)


def v3_leaf(pki: FixturePki) -> Chain:
    key = tools.make_device_key()
    csr = tools.make_device_csr(key, PROJECT, CERTIFICATE_ID)
    leaf = tools.sign_device_csr(csr, pki.root.key, pki.root.cert, version="v3")
    return Chain(leaf, [pki.root.cert], policy=VerificationPolicy(require_v3=True))


def extra_subject_attributes(pki: FixturePki) -> Chain:
    subject = name(
        (NameOID.COUNTRY_NAME, "DE"),
        (NameOID.STATE_OR_PROVINCE_NAME, "Berlin"),
        (NameOID.ORGANIZATION_NAME, PROJECT),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Sensors"),
        (NameOID.COMMON_NAME, CERTIFICATE_ID),
    )
    return Chain(issue(pki.root, subject), [pki.root.cert])


def not_yet_valid_within_skew(pki: FixturePki) -> Chain:
    start = utcnow() + SKEW - dt.timedelta(minutes=1)
    return Chain(issue(pki.root, not_before=start), [pki.root.cert])


def expired_within_skew(pki: FixturePki) -> Chain:
    end = utcnow() - SKEW + dt.timedelta(minutes=1)
    leaf = issue(pki.root, not_before=end - dt.timedelta(days=1), not_after=end)
    return Chain(leaf, [pki.root.cert])


def leaf_key(key: tools.PrivateKey) -> Callable[[FixturePki], Chain]:
    def build(pki: FixturePki) -> Chain:
        return Chain(issue(pki.root, key=key), [pki.root.cert])

    return build


def root_key(key_type: tools.KeyType) -> Callable[[FixturePki], Chain]:
    def build(pki: FixturePki) -> Chain:
        key, cert = tools.make_root(f"Root {key_type}", key_type)
        return Chain(issue(Ca(key, cert), v1=True), [cert])

    return build


def rsa_pss_signed(pki: FixturePki) -> Chain:
    root_key, root_cert = tools.make_root("RSA Root", "rsa2048")
    builder = (
        x509.CertificateBuilder()
        .subject_name(device_name())
        .issuer_name(root_cert.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(tools.random_serial())
        .not_valid_before(utcnow() - dt.timedelta(hours=1))
        .not_valid_after(utcnow() + dt.timedelta(days=1))
    )
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    assert isinstance(root_key, rsa.RSAPrivateKey)
    leaf = builder.sign(root_key, hashes.SHA256(), rsa_padding=pss)
    return Chain(leaf, [root_cert])


def same_subject_roots(which: int) -> Callable[[FixturePki], Chain]:
    def build(pki: FixturePki) -> Chain:
        # Both roots are called "Root CA", as the openssl recipe makes them.
        roots = [make_ca(None, "Root CA"), make_ca(None, "Root CA")]
        leaf = issue(roots[which], v1=True)
        return Chain(leaf, [root.cert for root in roots])

    return build


def renewed_root_same_key(pki: FixturePki) -> Chain:
    # A root re-issued with its old key: the expired copy must not win.
    key = ec.generate_private_key(ec.SECP256R1())
    now = utcnow()
    expired = make_ca(
        None,
        "Renewed Root",
        key=key,
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=35),
    )
    renewed = make_ca(None, "Renewed Root", key=key)
    return Chain(issue(renewed, v1=True), [expired.cert, renewed.cert])


def max_depth(pki: FixturePki) -> Chain:
    issuer, intermediates = chain_of(3, pki)
    untrusted = [ca.cert for ca in intermediates]
    return Chain(issue(issuer, v1=True), [pki.root.cert], untrusted=untrusted)


def ca_in_two_projects(pki: FixturePki) -> Chain:
    leaf = issue(pki.root, device_name(OTHER_PROJECT))
    return Chain(leaf, [pki.root.cert], other_anchors=[pki.root.cert])


ACCEPTED = [
    pytest.param(root_anchor, id="ok/root-anchor"),
    pytest.param(intermediate_anchor, id="ok/intermediate-anchor"),
    pytest.param(root_anchor_intermediate_sent, id="ok/root-anchor-intermediate-sent"),
    pytest.param(root_and_intermediate_registered, id="ok/root-and-intermediate"),
    pytest.param(device_sends_registered_root, id="ok/device-sends-registered-root"),
    pytest.param(v3_leaf, id="ok/v3-leaf-require-v3"),
    pytest.param(extra_subject_attributes, id="ok/extra-subject-attributes"),
    pytest.param(not_yet_valid_within_skew, id="ok/not-yet-valid-within-skew"),
    pytest.param(expired_within_skew, id="ok/expired-within-skew"),
    pytest.param(leaf_key(ed25519.Ed25519PrivateKey.generate()), id="ok/ed25519-leaf"),
    pytest.param(leaf_key(rsa.generate_private_key(65537, 2048)), id="ok/rsa2048-leaf"),
    pytest.param(leaf_key(ec.generate_private_key(ec.SECP384R1())), id="ok/p384-leaf"),
    pytest.param(root_key("ed25519"), id="ok/ed25519-root"),
    pytest.param(root_key("rsa2048"), id="ok/rsa2048-root"),
    pytest.param(root_key("ec-p384"), id="ok/p384-root"),
    pytest.param(rsa_pss_signed, id="ok/rsa-pss-signature"),
    pytest.param(same_subject_roots(0), id="ok/same-subject-roots-first"),
    pytest.param(same_subject_roots(1), id="ok/same-subject-roots-second"),
    pytest.param(renewed_root_same_key, id="ok/renewed-root-same-key"),
    pytest.param(max_depth, id="ok/chain-at-max-depth"),
    pytest.param(ca_in_two_projects, id="ok/ca-in-two-projects"),
]


@pytest.mark.parametrize("build", ACCEPTED)
def test_chain_accepted(build: Callable[[FixturePki], Chain], pki: FixturePki) -> None:
    chain = build(pki)

    device = run(chain)

    assert device.fingerprint == fingerprint(chain.leaf)
    assert device.chain[0] is chain.leaf
    assert device.anchor_fingerprint == fingerprint(device.chain[-1])
    assert device.anchor_fingerprint in {fingerprint(c) for c in chain.anchors}


# Rejected chains.


def v1_leaf_require_v3(pki: FixturePki) -> Chain:
    policy = VerificationPolicy(require_v3=True)
    return Chain(issue(pki.root, v1=True), [pki.root.cert], policy=policy)


def expired_leaf(pki: FixturePki) -> Chain:
    end = utcnow() - SKEW - dt.timedelta(minutes=1)
    leaf = issue(pki.root, not_before=end - dt.timedelta(days=7), not_after=end)
    return Chain(leaf, [pki.root.cert])


def not_yet_valid_leaf(pki: FixturePki) -> Chain:
    start = utcnow() + SKEW + dt.timedelta(minutes=1)
    return Chain(issue(pki.root, not_before=start), [pki.root.cert])


def subject(*attributes: tuple[ObjectIdentifier, str]) -> Callable[[FixturePki], Chain]:
    def build(pki: FixturePki) -> Chain:
        return Chain(issue(pki.root, name(*attributes)), [pki.root.cert])

    return build


ORG = NameOID.ORGANIZATION_NAME
CN = NameOID.COMMON_NAME


def other_project_in_o(pki: FixturePki) -> Chain:
    # Signed by this project's root, but claims the other project.
    leaf = issue(pki.root, device_name(OTHER_PROJECT))
    return Chain(leaf, [pki.root.cert], other_anchors=[pki.other_root.cert])


def ca_of_other_project(pki: FixturePki) -> Chain:
    leaf = issue(pki.other_root)
    return Chain(leaf, [pki.root.cert], other_anchors=[pki.other_root.cert])


def disabled_ca(pki: FixturePki) -> Chain:
    # A disabled CA is not among the anchors, while another CA stays enabled.
    return Chain(issue(pki.intermediate, v1=True), [pki.other_root.cert])


def no_enabled_ca(pki: FixturePki) -> Chain:
    return Chain(issue(pki.root, v1=True), [])


def self_signed_leaf(pki: FixturePki) -> Chain:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(device_name())
        .issuer_name(device_name())
        .public_key(key.public_key())
        .serial_number(tools.random_serial())
        .not_valid_before(utcnow() - dt.timedelta(hours=1))
        .not_valid_after(utcnow() + dt.timedelta(days=1))
    )
    return Chain(builder.sign(key, hashes.SHA256()), [pki.root.cert])


def sha1_leaf(pki: FixturePki) -> Chain:
    leaf = issue(pki.root, v1=True)
    leaf = with_signature_algorithm(leaf, ECDSA_WITH_SHA1, hashes.SHA1(), pki.root)
    return Chain(leaf, [pki.root.cert])


def md5_leaf(pki: FixturePki) -> Chain:
    key, cert = tools.make_root("RSA Root", "rsa2048")
    root = Ca(key, cert)
    leaf = with_signature_algorithm(issue(root), RSA_WITH_MD5, hashes.MD5(), root)
    return Chain(leaf, [cert])


def leaf_is_ca(pki: FixturePki) -> Chain:
    leaf = issue(pki.root, extensions=ca_extensions())
    return Chain(leaf, [pki.root.cert])


def leaf_key_cert_sign(pki: FixturePki) -> Chain:
    usage = key_usage(key_cert_sign=True, digital_signature=True)
    leaf = issue(pki.root, extensions=[(usage, True)])
    return Chain(leaf, [pki.root.cert])


def serial(value: int) -> Callable[[FixturePki], Chain]:
    def build(pki: FixturePki) -> Chain:
        leaf = with_serial(issue(pki.root, v1=True), value, pki.root)
        return Chain(leaf, [pki.root.cert])

    return build


def expired_registered_root(pki: FixturePki) -> Chain:
    now = utcnow()
    root = make_ca(
        None,
        "Old Root",
        not_before=now - dt.timedelta(days=60),
        not_after=now - dt.timedelta(days=1),
    )
    return Chain(issue(root, v1=True), [root.cert])


def expired_sent_intermediate(pki: FixturePki) -> Chain:
    now = utcnow()
    intermediate = make_ca(
        pki.root,
        "Old Intermediate",
        not_before=now - dt.timedelta(days=60),
        not_after=now - dt.timedelta(days=1),
    )
    leaf = issue(intermediate, v1=True)
    return Chain(leaf, [pki.root.cert], untrusted=[intermediate.cert])


def not_yet_valid_registered_ca(pki: FixturePki) -> Chain:
    root = make_ca(None, "Future Root", not_before=utcnow() + dt.timedelta(days=1))
    return Chain(issue(root, v1=True), [root.cert])


def device_sent_root(common_name: str) -> Callable[[FixturePki], Chain]:
    def build(pki: FixturePki) -> Chain:
        rogue = make_ca(None, common_name)
        leaf = issue(rogue, v1=True)
        return Chain(leaf, [pki.root.cert], untrusted=[rogue.cert])

    return build


def chain_too_long(pki: FixturePki) -> Chain:
    issuer, intermediates = chain_of(4, pki)
    untrusted = [ca.cert for ca in intermediates]
    return Chain(issue(issuer, v1=True), [pki.root.cert], untrusted=untrusted)


def too_many_sent(pki: FixturePki) -> Chain:
    policy = VerificationPolicy(max_chain_depth=1)
    untrusted = [pki.intermediate.cert, pki.root.cert, pki.other_root.cert]
    return Chain(issue(pki.root), [pki.root.cert], untrusted=untrusted, policy=policy)


def path_length_exceeded(pki: FixturePki) -> Chain:
    first = make_ca(pki.root, "PathLen 0", extensions=ca_extensions(path_length=0))
    second = make_ca(first, "Below PathLen 0")
    leaf = issue(second, v1=True)
    untrusted = [first.cert, second.cert]
    return Chain(leaf, [pki.root.cert], untrusted=untrusted)


def name_constraints(
    constraint: x509.NameConstraints,
) -> Callable[[FixturePki], Chain]:
    def build(pki: FixturePki) -> Chain:
        extensions = [*ca_extensions(), (constraint, True)]
        root = make_ca(None, "Constrained Root", extensions=extensions)
        return Chain(issue(root, v1=True), [root.cert])

    return build


PERMIT_OTHER = x509.NameConstraints(
    permitted_subtrees=[x509.DirectoryName(name((ORG, OTHER_PROJECT)))],
    excluded_subtrees=None,
)
EXCLUDE_PROJECT = x509.NameConstraints(
    permitted_subtrees=None,
    excluded_subtrees=[x509.DirectoryName(name((ORG, PROJECT)))],
)


def unknown_critical_extension(pki: FixturePki) -> Chain:
    extension = x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00")
    leaf = issue(pki.root, extensions=[(extension, True)])
    return Chain(leaf, [pki.root.cert])


def unknown_critical_extension_in_ca(pki: FixturePki) -> Chain:
    extension = x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00")
    extensions = [*ca_extensions(), (extension, True)]
    intermediate = make_ca(pki.root, "Odd Intermediate", extensions=extensions)
    leaf = issue(intermediate, v1=True)
    return Chain(leaf, [pki.root.cert], untrusted=[intermediate.cert])


def sent_intermediate(
    extensions: list[tuple[x509.ExtensionType, bool]],
    key: tools.PrivateKey | None = None,
) -> Callable[[FixturePki], Chain]:
    def build(pki: FixturePki) -> Chain:
        intermediate = make_ca(pki.root, "Sent CA", extensions=extensions, key=key)
        leaf = issue(intermediate, v1=True)
        return Chain(leaf, [pki.root.cert], untrusted=[intermediate.cert])

    return build


NOT_CA = [(x509.BasicConstraints(ca=False, path_length=None), True)]
CERT_SIGN_WITHOUT_BC = [(key_usage(key_cert_sign=True, digital_signature=False), True)]
NO_CERT_SIGN = [
    (x509.BasicConstraints(ca=True, path_length=None), True),
    (key_usage(key_cert_sign=False, digital_signature=True), True),
]


def weak_registered_root(pki: FixturePki) -> Chain:
    root = make_ca(None, "Weak Root", key=rsa.generate_private_key(65537, 1024))
    return Chain(issue(root, v1=True), [root.cert])


def broken_signature(pki: FixturePki) -> Chain:
    leaf = with_broken_signature(issue(pki.root, v1=True))
    return Chain(leaf, [pki.root.cert])


def leaf_registered_as_anchor(pki: FixturePki) -> Chain:
    # Only possible if a store bypassed check_ca_certificate, but under
    # PARTIAL_CHAIN a registered leaf would otherwise trust itself.
    leaf = issue(pki.root, v1=True)
    return Chain(leaf, [leaf])


def dsa_leaf(pki: FixturePki) -> Chain:
    key = dsa.generate_private_key(2048)
    return Chain(issue(pki.root, key=key), [pki.root.cert])


REJECTED = [
    pytest.param(
        v1_leaf_require_v3, Reason.V1_NOT_ALLOWED, id="fail/v1-leaf-require-v3"
    ),
    pytest.param(expired_leaf, Reason.EXPIRED, id="fail/expired-leaf"),
    pytest.param(
        not_yet_valid_leaf, Reason.NOT_YET_VALID, id="fail/not-yet-valid-leaf"
    ),
    pytest.param(
        other_project_in_o, Reason.UNKNOWN_CA, id="fail/wrong-o-other-project"
    ),
    pytest.param(
        subject((ORG, "no-such-project"), (CN, CERTIFICATE_ID)),
        Reason.UNKNOWN_PROJECT,
        id="fail/unknown-project",
    ),
    pytest.param(
        subject((ORG, "Acme Sensors Inc."), (CN, CERTIFICATE_ID)),
        Reason.UNKNOWN_PROJECT,
        id="fail/o-not-a-project-id",
    ),
    pytest.param(
        subject((ORG, PROJECT), (CN, "dev-1"), (CN, "dev-2")),
        Reason.BAD_SUBJECT,
        id="fail/two-cns",
    ),
    pytest.param(
        subject((ORG, PROJECT), (ORG, OTHER_PROJECT), (CN, CERTIFICATE_ID)),
        Reason.BAD_SUBJECT,
        id="fail/two-os",
    ),
    pytest.param(subject((ORG, PROJECT)), Reason.BAD_SUBJECT, id="fail/no-cn"),
    pytest.param(subject((CN, CERTIFICATE_ID)), Reason.BAD_SUBJECT, id="fail/no-o"),
    pytest.param(
        subject((ORG, PROJECT), (CN, "dev 1")),
        Reason.INVALID_CERTIFICATE_ID,
        id="fail/space-in-cn",
    ),
    pytest.param(
        subject((ORG, PROJECT), (CN, "gerät-1")),
        Reason.INVALID_CERTIFICATE_ID,
        id="fail/non-ascii-cn",
    ),
    pytest.param(
        subject((ORG, PROJECT), (CN, "dev-1\n")),
        Reason.INVALID_CERTIFICATE_ID,
        id="fail/control-char-cn",
    ),
    pytest.param(ca_of_other_project, Reason.UNKNOWN_CA, id="fail/ca-of-other-project"),
    pytest.param(disabled_ca, Reason.UNKNOWN_CA, id="fail/disabled-ca"),
    pytest.param(no_enabled_ca, Reason.UNKNOWN_CA, id="fail/no-enabled-ca"),
    pytest.param(self_signed_leaf, Reason.UNKNOWN_CA, id="fail/self-signed-leaf"),
    pytest.param(sha1_leaf, Reason.WEAK_SIGNATURE, id="fail/sha1-signed-leaf"),
    pytest.param(md5_leaf, Reason.WEAK_SIGNATURE, id="fail/md5-signed-leaf"),
    pytest.param(
        leaf_key(rsa.generate_private_key(65537, 1024)),
        Reason.WEAK_KEY,
        id="fail/rsa1024-leaf",
    ),
    pytest.param(
        leaf_key(ec.generate_private_key(ec.SECP192R1())),
        Reason.WEAK_KEY,
        id="fail/p192-leaf",
    ),
    pytest.param(
        leaf_key(ec.generate_private_key(ec.SECP521R1())),
        Reason.WEAK_KEY,
        id="fail/p521-leaf-not-allowed",
    ),
    pytest.param(dsa_leaf, Reason.WEAK_KEY, id="fail/dsa-leaf"),
    pytest.param(leaf_is_ca, Reason.LEAF_IS_CA, id="fail/leaf-is-ca"),
    pytest.param(leaf_key_cert_sign, Reason.LEAF_IS_CA, id="fail/leaf-key-cert-sign"),
    pytest.param(serial(0), Reason.BAD_SERIAL, id="fail/zero-serial"),
    pytest.param(serial(-5), Reason.BAD_SERIAL, id="fail/negative-serial"),
    pytest.param(expired_registered_root, Reason.CA_EXPIRED, id="fail/expired-root"),
    pytest.param(
        expired_sent_intermediate, Reason.CA_EXPIRED, id="fail/expired-intermediate"
    ),
    pytest.param(
        not_yet_valid_registered_ca,
        Reason.CA_NOT_YET_VALID,
        id="fail/not-yet-valid-root",
    ),
    pytest.param(
        device_sent_root("Rogue Root CA"),
        Reason.UNKNOWN_CA,
        id="fail/device-sent-root",
    ),
    pytest.param(
        device_sent_root("Root CA"),
        Reason.BAD_SIGNATURE,
        id="fail/device-sent-root-same-subject",
    ),
    pytest.param(chain_too_long, Reason.CHAIN_TOO_LONG, id="fail/chain-too-long"),
    pytest.param(too_many_sent, Reason.CHAIN_TOO_LONG, id="fail/too-many-sent"),
    pytest.param(
        path_length_exceeded,
        Reason.PATH_LENGTH_EXCEEDED,
        id="fail/path-length-exceeded",
    ),
    pytest.param(
        name_constraints(PERMIT_OTHER),
        Reason.NAME_CONSTRAINTS,
        id="fail/name-constraints-permitted",
    ),
    pytest.param(
        name_constraints(EXCLUDE_PROJECT),
        Reason.NAME_CONSTRAINTS,
        id="fail/name-constraints-excluded",
    ),
    pytest.param(
        unknown_critical_extension,
        Reason.UNHANDLED_CRITICAL_EXTENSION,
        id="fail/unknown-critical-extension",
    ),
    pytest.param(
        unknown_critical_extension_in_ca,
        Reason.UNHANDLED_CRITICAL_EXTENSION,
        id="fail/unknown-critical-extension-in-ca",
    ),
    pytest.param(
        sent_intermediate(NOT_CA), Reason.NOT_A_CA, id="fail/intermediate-not-ca"
    ),
    pytest.param(
        sent_intermediate(CERT_SIGN_WITHOUT_BC),
        Reason.NOT_A_CA,
        id="fail/intermediate-without-basic-constraints",
    ),
    pytest.param(
        sent_intermediate(NO_CERT_SIGN),
        Reason.BAD_KEY_USAGE,
        id="fail/intermediate-without-key-cert-sign",
    ),
    pytest.param(
        sent_intermediate(ca_extensions(), ec.generate_private_key(ec.SECP192R1())),
        Reason.WEAK_KEY,
        id="fail/intermediate-p192-key",
    ),
    pytest.param(weak_registered_root, Reason.WEAK_KEY, id="fail/weak-registered-root"),
    pytest.param(broken_signature, Reason.BAD_SIGNATURE, id="fail/broken-signature"),
    pytest.param(
        leaf_registered_as_anchor,
        Reason.UNKNOWN_CA,
        id="fail/leaf-registered-as-anchor",
    ),
]


@pytest.mark.parametrize(("build", "reason"), REJECTED)
@pytest.mark.filterwarnings("ignore:Parsed a serial number:UserWarning")
def test_chain_rejected(
    build: Callable[[FixturePki], Chain], reason: Reason, pki: FixturePki
) -> None:
    chain = build(pki)

    with pytest.raises(ChainRejected) as caught:
        run(chain)

    assert caught.value.reason == reason, caught.value.message
    assert caught.value.fingerprint == fingerprint(chain.leaf)


# Results, context and the verifier's caches.


def test_verified_device_fields(pki: FixturePki) -> None:
    leaf = issue(pki.intermediate, v1=True)
    chain = Chain(leaf, [pki.root.cert], untrusted=[pki.intermediate.cert])

    device = run(chain)

    assert device.project_id == PROJECT
    assert device.certificate_id == CERTIFICATE_ID
    assert device.fingerprint == fingerprint(leaf)
    assert device.serial_number == leaf.serial_number
    assert device.not_after == leaf.not_valid_after_utc
    assert device.anchor_fingerprint == fingerprint(pki.root.cert)
    assert device.chain == (leaf, pki.intermediate.cert, pki.root.cert)


def test_rejection_carries_context(pki: FixturePki) -> None:
    leaf = issue(pki.other_root)

    with pytest.raises(ChainRejected) as caught:
        run(Chain(leaf, [pki.root.cert]))

    assert caught.value.project_id == PROJECT
    assert caught.value.certificate_id == CERTIFICATE_ID
    assert caught.value.fingerprint == fingerprint(leaf)
    assert f"reason={Reason.UNKNOWN_CA}" in caught.value.log_fields()


def test_same_subject_roots_each_own_anchor() -> None:
    first, second = make_ca(None, "Root CA"), make_ca(None, "Root CA")
    source = StaticSource()
    source.register(PROJECT, [first.cert, second.cert])
    verifier = ChainVerifier(source)

    for root in (first, second, first):
        device = verifier.verify(issue(root, v1=True))

        assert device.anchor_fingerprint == fingerprint(root.cert)


def test_disabled_ca_takes_effect_at_once(pki: FixturePki) -> None:
    source = StaticSource()
    source.register(PROJECT, [pki.root.cert, pki.intermediate.cert])
    verifier = ChainVerifier(source)
    leaf = issue(pki.intermediate, v1=True)
    verifier.verify(leaf)

    source.register(PROJECT, [pki.other_root.cert])

    with pytest.raises(ChainRejected) as caught:
        verifier.verify(leaf)
    assert caught.value.reason == Reason.UNKNOWN_CA


def test_unknown_project_checks_source_once(pki: FixturePki) -> None:
    source = StaticSource()
    verifier = ChainVerifier(source)

    with pytest.raises(ChainRejected) as caught:
        verifier.verify(issue(pki.root))

    assert caught.value.reason == Reason.UNKNOWN_PROJECT
    assert source.calls == 1


def test_anchor_fingerprint_mismatch_logged(
    pki: FixturePki, caplog: pytest.LogCaptureFixture
) -> None:
    source = StaticSource()
    source.projects[PROJECT] = ProjectTrust(
        anchors=[Anchor(pki.root.cert, "00" * 32, ca_id="ca-1")],
        policy=VerificationPolicy(),
    )

    with caplog.at_level(logging.ERROR, logger="fleetgate.pki.verify"):
        device = ChainVerifier(source).verify(issue(pki.root, v1=True))

    assert device.anchor_fingerprint == fingerprint(pki.root.cert)
    assert "anchor fingerprint mismatch ca_id=ca-1" in caplog.text


def test_explicit_now_moves_validity(pki: FixturePki) -> None:
    leaf = issue(pki.root, v1=True)
    later = leaf.not_valid_after_utc + SKEW + dt.timedelta(seconds=1)

    with pytest.raises(ChainRejected) as caught:
        run(Chain(leaf, [pki.root.cert], now=later))

    assert caught.value.reason == Reason.EXPIRED


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"max_chain_depth": 0}, id="fail/zero-depth"),
        pytest.param({"clock_skew": dt.timedelta(seconds=-1)}, id="fail/negative-skew"),
    ],
)
def test_policy_invalid_values(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        VerificationPolicy(**options)  # type: ignore[arg-type]


# The documented openssl recipe, run with Debian's openssl command.

OPENSSL = shutil.which("openssl")


def openssl(command: str, cwd: Path) -> None:
    """Run one openssl command line in ``cwd``; fail the test if it fails."""
    assert OPENSSL is not None
    args = [OPENSSL, *shlex.split(command)]
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
def test_openssl_recipe_accepted(tmp_path: Path) -> None:
    subject = f"/O={PROJECT}/CN={CERTIFICATE_ID}"
    openssl("ecparam -name prime256v1 -genkey -noout -out root.key", tmp_path)
    openssl(
        "req -x509 -new -nodes -key root.key -sha256 -subj '/CN=Root CA' "
        "-days 1024 -out root.crt",
        tmp_path,
    )
    openssl("ecparam -name prime256v1 -genkey -noout -out dev.key", tmp_path)
    openssl(f"req -new -key dev.key -subj {subject} -out dev.csr", tmp_path)
    openssl(
        "x509 -req -in dev.csr -CA root.crt -CAkey root.key -CAcreateserial "
        "-out dev.crt -days 7 -sha256",
        tmp_path,
    )
    [root] = load_certificates((tmp_path / "root.crt").read_bytes())
    [leaf] = load_certificates((tmp_path / "dev.crt").read_bytes())

    device = run(Chain(leaf, [root]))

    assert leaf.version == x509.Version.v1
    assert device.certificate_id == CERTIFICATE_ID
    assert device.anchor_fingerprint == fingerprint(root)
