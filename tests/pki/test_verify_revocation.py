"""ChainVerifier: certificates listed in an anchor's CRL are rejected as revoked."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from cryptography import x509

from fleetgate.errors import ChainRejected, Reason
from fleetgate.pki import tools
from fleetgate.pki.identity import fingerprint
from fleetgate.pki.verify import (
    Anchor,
    ChainVerifier,
    ProjectTrust,
    VerificationPolicy,
)

PROJECT = "acme-sensors"


class StaticSource:
    def __init__(self, trust: ProjectTrust) -> None:
        self.trust = trust

    def anchors_for(self, project_id: str) -> ProjectTrust | None:
        return self.trust if project_id == PROJECT else None


def device(issuer_key: tools.PrivateKey, issuer: x509.Certificate) -> x509.Certificate:
    key = tools.make_device_key()
    csr = tools.make_device_csr(key, PROJECT, "dev-1")
    return tools.sign_device_csr(csr, issuer_key, issuer)


def verifier(
    anchors: list[x509.Certificate], revoked: Mapping[str, frozenset[int]]
) -> ChainVerifier:
    trust = ProjectTrust(
        anchors=tuple(Anchor(cert, fingerprint(cert)) for cert in anchors),
        policy=VerificationPolicy(),
        revoked=revoked,
    )
    return ChainVerifier(StaticSource(trust))


@pytest.fixture(scope="module")
def root() -> tuple[tools.PrivateKey, x509.Certificate]:
    return tools.make_root()


def test_revoked_leaf_rejected(root: tuple[tools.PrivateKey, x509.Certificate]) -> None:
    root_key, root_cert = root
    leaf = device(root_key, root_cert)
    checker = verifier(
        [root_cert], {fingerprint(root_cert): frozenset({leaf.serial_number})}
    )

    with pytest.raises(ChainRejected) as caught:
        checker.verify(leaf)

    assert caught.value.reason is Reason.REVOKED
    assert f"{leaf.serial_number:#x}" in caught.value.message


def test_unlisted_leaf_accepted(
    root: tuple[tools.PrivateKey, x509.Certificate],
) -> None:
    root_key, root_cert = root
    leaf = device(root_key, root_cert)
    checker = verifier(
        [root_cert], {fingerprint(root_cert): frozenset({leaf.serial_number + 1})}
    )

    verified = checker.verify(leaf)

    assert verified.certificate_id == "dev-1"


def test_revoked_sent_intermediate_rejected(
    root: tuple[tools.PrivateKey, x509.Certificate],
) -> None:
    root_key, root_cert = root
    intermediate_key, intermediate = tools.make_intermediate(root_key, root_cert)
    leaf = device(intermediate_key, intermediate)
    checker = verifier(
        [root_cert], {fingerprint(root_cert): frozenset({intermediate.serial_number})}
    )

    with pytest.raises(ChainRejected) as caught:
        checker.verify(leaf, [intermediate])

    assert caught.value.reason is Reason.REVOKED


def test_registered_intermediate_crl_applies(
    root: tuple[tools.PrivateKey, x509.Certificate],
) -> None:
    root_key, root_cert = root
    intermediate_key, intermediate = tools.make_intermediate(root_key, root_cert)
    leaf = device(intermediate_key, intermediate)
    revoked = {fingerprint(intermediate): frozenset({leaf.serial_number})}

    with pytest.raises(ChainRejected) as caught:
        verifier([root_cert, intermediate], revoked).verify(leaf)

    assert caught.value.reason is Reason.REVOKED


def test_crl_of_other_ca_ignored(
    root: tuple[tools.PrivateKey, x509.Certificate],
) -> None:
    root_key, root_cert = root
    _, other_root = tools.make_root("Other Root")
    leaf = device(root_key, root_cert)
    revoked = {fingerprint(other_root): frozenset({leaf.serial_number})}

    verified = verifier([root_cert, other_root], revoked).verify(leaf)

    assert verified.anchor_fingerprint == fingerprint(root_cert)
