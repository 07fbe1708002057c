"""ChainVerifier caches: work kept per CA certificate never outlives a trust change.

The handshake path (``verify_openssl``) keeps what a sent CA
certificate's DER alone decides, and prepared anchors and stores per
project trust. Each test verifies once to fill the caches, changes the
project's trust, and expects the very next verification to follow it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import crypto

from fleetgate.errors import ChainRejected, Reason
from fleetgate.gateway.trust import TrustCache
from fleetgate.pki.identity import fingerprint
from fleetgate.pki.verify import (
    Anchor,
    ChainVerifier,
    ProjectTrust,
    VerificationPolicy,
    VerifiedDevice,
)
from fleetgate.store import certificates
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project

from .conftest import (
    ECDSA_WITH_SHA1,
    OTHER_PROJECT,
    PROJECT,
    Ca,
    FixturePki,
    StaticSource,
    device_name,
    issue,
    make_ca,
    with_signature_algorithm,
)


def handshake_chain(*certs: x509.Certificate) -> list[crypto.X509]:
    """Return the certificates as OpenSSL parsed them, as in a handshake."""
    return [crypto.X509.from_cryptography(cert) for cert in certs]


def rejection(verifier: ChainVerifier, chain: list[crypto.X509]) -> ChainRejected:
    """Return the ChainRejected that verifying ``chain`` raises."""
    with pytest.raises(ChainRejected) as caught:
        verifier.verify_openssl(chain)
    return caught.value


@pytest.fixture
def sent_chain(pki: FixturePki) -> list[crypto.X509]:
    """A device of PROJECT under the intermediate, which the device sends."""
    return handshake_chain(issue(pki.intermediate, v1=True), pki.intermediate.cert)


def test_disabled_root_rejects_cached_intermediate(
    pki: FixturePki, sent_chain: list[crypto.X509]
) -> None:
    source = StaticSource()
    source.register(PROJECT, [pki.root.cert])
    verifier = ChainVerifier(source)
    verifier.verify_openssl(sent_chain)
    verifier.verify_openssl(sent_chain)

    source.register(PROJECT, [pki.other_root.cert])

    assert rejection(verifier, sent_chain).reason == Reason.UNKNOWN_CA


def test_crl_revokes_cached_intermediate(
    pki: FixturePki, sent_chain: list[crypto.X509]
) -> None:
    anchors = [Anchor(pki.root.cert, fingerprint(pki.root.cert))]
    source = StaticSource()
    source.projects[PROJECT] = ProjectTrust(anchors, VerificationPolicy())
    verifier = ChainVerifier(source)
    verifier.verify_openssl(sent_chain)

    revoked = {
        fingerprint(pki.root.cert): frozenset({pki.intermediate.cert.serial_number})
    }
    source.projects[PROJECT] = ProjectTrust(anchors, VerificationPolicy(), revoked)

    assert rejection(verifier, sent_chain).reason == Reason.REVOKED


def test_added_root_accepts_at_once(
    pki: FixturePki, sent_chain: list[crypto.X509]
) -> None:
    source = StaticSource()
    source.register(PROJECT, [pki.other_root.cert])
    verifier = ChainVerifier(source)
    first = rejection(verifier, sent_chain)

    source.register(PROJECT, [pki.other_root.cert, pki.root.cert])
    device = verifier.verify_openssl(sent_chain)

    assert first.reason == Reason.UNKNOWN_CA
    assert device.anchor_fingerprint == fingerprint(pki.root.cert)


def test_cached_intermediate_not_trusted_in_other_project(pki: FixturePki) -> None:
    source = StaticSource()
    source.register(PROJECT, [pki.root.cert])
    source.register(OTHER_PROJECT, [pki.other_root.cert])
    verifier = ChainVerifier(source)
    verifier.verify_openssl(
        handshake_chain(issue(pki.intermediate, v1=True), pki.intermediate.cert)
    )
    other_leaf = issue(pki.intermediate, device_name(OTHER_PROJECT), v1=True)

    caught = rejection(verifier, handshake_chain(other_leaf, pki.intermediate.cert))

    assert caught.reason == Reason.UNKNOWN_CA
    assert caught.project_id == OTHER_PROJECT


def test_weak_sent_intermediate_rejected_every_time(pki: FixturePki) -> None:
    weak = make_ca(pki.root, "Weak Intermediate")
    weak_cert = with_signature_algorithm(
        weak.cert, ECDSA_WITH_SHA1, hashes.SHA1(), pki.root
    )
    chain = handshake_chain(issue(Ca(weak.key, weak_cert), v1=True), weak_cert)
    source = StaticSource()
    source.register(PROJECT, [pki.root.cert])
    verifier = ChainVerifier(source)

    first = rejection(verifier, chain)
    second = rejection(verifier, chain)

    assert first.reason == Reason.WEAK_SIGNATURE
    assert second.reason == Reason.WEAK_SIGNATURE
    assert second.message == first.message


def test_sent_path_matches_uncached_verify(
    pki: FixturePki, sent_chain: list[crypto.X509]
) -> None:
    source = StaticSource()
    source.register(PROJECT, [pki.root.cert])
    leaf, intermediate = (cert.to_cryptography() for cert in sent_chain)

    cached = ChainVerifier(source)
    cached.verify_openssl(sent_chain)
    again = cached.verify_openssl(sent_chain)
    fresh = ChainVerifier(source).verify(leaf, [intermediate])

    assert again == fresh


@pytest.fixture
def store_verifier(
    database: Database, pki: FixturePki
) -> Iterator[tuple[ChainVerifier, TrustCache, str]]:
    """A verifier over a TrustCache on the store, with PROJECT's root added."""
    create_project(database, PROJECT)
    record = certificates.add_ca_certificate(
        database, PROJECT, pki.root.cert.public_bytes(Encoding.PEM)
    )
    trust = TrustCache(
        lambda project: certificates.trust_for(database, project),
        version=lambda project: certificates.trust_version(database, project),
    )
    yield ChainVerifier(trust), trust, record.id


def test_store_disable_rejects_next_handshake(
    database: Database,
    store_verifier: tuple[ChainVerifier, TrustCache, str],
    sent_chain: list[crypto.X509],
) -> None:
    verifier, trust, ca_id = store_verifier
    accepted = verifier.verify_openssl(sent_chain)

    certificates.set_ca_certificate_enabled(database, PROJECT, ca_id, False)
    trust.invalidate(PROJECT)

    assert isinstance(accepted, VerifiedDevice)
    assert rejection(verifier, sent_chain).reason == Reason.UNKNOWN_CA


def test_store_delete_rejects_next_handshake(
    database: Database,
    store_verifier: tuple[ChainVerifier, TrustCache, str],
    sent_chain: list[crypto.X509],
) -> None:
    verifier, trust, ca_id = store_verifier
    verifier.verify_openssl(sent_chain)

    certificates.delete_ca_certificate(database, PROJECT, ca_id)
    trust.invalidate(PROJECT)

    assert rejection(verifier, sent_chain).reason == Reason.UNKNOWN_CA
