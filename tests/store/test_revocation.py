"""CRLs loaded for registered CA certificates, and the trust they feed."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from fleetgate.errors import InvalidInput, NotFound, Reason
from fleetgate.store import audit, revocation
from fleetgate.store.certificates import (
    add_ca_certificate,
    delete_ca_certificate,
    get_ca_certificate,
    set_ca_certificate_enabled,
    trust_for,
    trust_version,
)
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project

from .certs import SigningCa, make_crl, make_intermediate, make_root

PROJECT = "acme"


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, PROJECT)
    return database


@pytest.fixture(scope="module")
def root() -> SigningCa:
    return make_root()


def register(db: Database, ca: SigningCa) -> str:
    return add_ca_certificate(db, PROJECT, ca.pem).id


def test_load_pem_crl_stores_fields(db: Database, root: SigningCa) -> None:
    ca_id = register(db, root)
    crl = make_crl(root, (5, 7), number=42)

    record = revocation.load_revocation_list(
        db, PROJECT, ca_id, crl.public_bytes(Encoding.PEM), actor="cli"
    )

    assert record.ca_certificate_id == ca_id
    assert record.revoked_count == 2
    assert record.crl_number == "42"
    assert record.next_update == crl.next_update_utc
    assert revocation.get_revocation_list(db, PROJECT, ca_id) == record
    actions = [entry.action for entry in audit.list_audit_entries(db, PROJECT).items]
    assert "ca.crl" in actions


def test_load_der_crl_replaces_previous(db: Database, root: SigningCa) -> None:
    ca_id = register(db, root)
    revocation.load_revocation_list(
        db, PROJECT, ca_id, make_crl(root, (5,)).public_bytes(Encoding.DER)
    )

    newer = make_crl(root, (5, 6, 7), number=2)
    record = revocation.load_revocation_list(
        db, PROJECT, ca_id, newer.public_bytes(Encoding.DER)
    )

    assert record.revoked_count == 3
    trust = trust_for(db, PROJECT)
    assert trust is not None
    fingerprint = get_ca_certificate(db, PROJECT, ca_id).fingerprint
    assert trust.revoked == {fingerprint: frozenset({5, 6, 7})}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        pytest.param("garbage", Reason.MALFORMED_CRL, id="fail/malformed"),
        pytest.param("empty", Reason.MALFORMED_CRL, id="fail/empty"),
        pytest.param("other-key", Reason.CRL_NOT_FROM_CA, id="fail/other-key"),
        pytest.param("other-issuer", Reason.CRL_NOT_FROM_CA, id="fail/other-issuer"),
    ],
)
def test_load_rejects_crl(
    db: Database, root: SigningCa, case: str, reason: Reason
) -> None:
    ca_id = register(db, root)
    encoded = {
        "garbage": lambda: b"\x30\x03\x02\x01\x05",
        "empty": lambda: b"",
        "other-key": lambda: make_crl(
            root, (1,), signing_key=ec.generate_private_key(ec.SECP256R1())
        ).public_bytes(Encoding.DER),
        "other-issuer": lambda: make_crl(make_root("Another Root"), (1,)).public_bytes(
            Encoding.DER
        ),
    }[case]()

    with pytest.raises(InvalidInput) as caught:
        revocation.load_revocation_list(db, PROJECT, ca_id, encoded)

    assert caught.value.reason is reason
    assert caught.value.message.startswith("cannot load CRL")
    assert "ParseError" not in caught.value.message
    assert revocation.get_revocation_list(db, PROJECT, ca_id) is None


def test_load_for_unknown_ca_not_found(db: Database, root: SigningCa) -> None:
    with pytest.raises(NotFound):
        revocation.load_revocation_list(
            db, PROJECT, "0" * 24, make_crl(root).public_bytes(Encoding.DER)
        )


def test_expired_crl_kept_and_warned(
    db: Database, root: SigningCa, caplog: pytest.LogCaptureFixture
) -> None:
    ca_id = register(db, root)
    expired = make_crl(root, (9,), next_update=-dt.timedelta(days=1))

    with caplog.at_level(logging.WARNING, logger="fleetgate.store.revocation"):
        revocation.load_revocation_list(
            db, PROJECT, ca_id, expired.public_bytes(Encoding.DER)
        )
        trust = trust_for(db, PROJECT)

    assert trust is not None
    assert frozenset({9}) in trust.revoked.values()
    warnings = [r.getMessage() for r in caplog.records]
    assert any("reason=crl_expired" in line for line in warnings)


def test_disabled_ca_crl_not_in_trust(db: Database, root: SigningCa) -> None:
    intermediate = make_intermediate(root)
    root_id = register(db, root)
    register(db, intermediate)
    revocation.load_revocation_list(
        db, PROJECT, root_id, make_crl(root, (3,)).public_bytes(Encoding.DER)
    )

    set_ca_certificate_enabled(db, PROJECT, root_id, False)
    trust = trust_for(db, PROJECT)

    assert trust is not None
    assert trust.revoked == {}


def test_deleting_ca_deletes_its_crl(db: Database, root: SigningCa) -> None:
    ca_id = register(db, root)
    revocation.load_revocation_list(
        db, PROJECT, ca_id, make_crl(root, (3,)).public_bytes(Encoding.DER)
    )

    delete_ca_certificate(db, PROJECT, ca_id)
    register(db, root)
    trust = trust_for(db, PROJECT)

    assert trust is not None
    assert trust.revoked == {}


def test_trust_version_follows_crl_loads(db: Database, root: SigningCa) -> None:
    ca_id = register(db, root)
    without = trust_version(db, PROJECT)
    revocation.load_revocation_list(
        db, PROJECT, ca_id, make_crl(root, (5,)).public_bytes(Encoding.DER)
    )
    first = trust_version(db, PROJECT)
    newer = make_crl(root, (5, 6), number=2)
    revocation.load_revocation_list(
        db, PROJECT, ca_id, newer.public_bytes(Encoding.DER)
    )
    replaced = trust_version(db, PROJECT)

    assert first != without
    assert replaced != first
