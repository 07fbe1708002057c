"""CA certificates: upload, list, enable, delete, and the trust they give."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import hashes

from fleetgate.errors import (
    Conflict,
    InvalidCertificate,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
)
from fleetgate.store.certificates import (
    MAX_FILE_BYTES,
    add_ca_certificate,
    delete_ca_certificate,
    get_ca_certificate,
    list_ca_certificates,
    set_ca_certificate_enabled,
    trust_for,
    trust_version,
)
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project

from .certs import SigningCa, make_intermediate, make_root


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, "acme")
    create_project(database, "other", require_v3=True)
    return database


@pytest.fixture(scope="module")
def root() -> SigningCa:
    return make_root("Acme Root")


def test_add_root_stores_its_fields(db: Database, root: SigningCa) -> None:
    record = add_ca_certificate(db, "acme", root.pem)
    certificate = root.certificate
    assert record.cert_type == "root"
    assert record.project_id == "acme"
    assert record.subject == "CN=Acme Root"
    assert record.issuer == "CN=Acme Root"
    assert record.fingerprint == certificate.fingerprint(hashes.SHA256()).hex()
    assert record.not_before == certificate.not_valid_before_utc
    assert record.not_after == certificate.not_valid_after_utc
    assert record.enabled is True
    assert record.source == "upload"
    assert record.der == root.der
    assert get_ca_certificate(db, "acme", record.id) == record


def test_add_detects_intermediate(db: Database, root: SigningCa) -> None:
    intermediate = make_intermediate(root, "Acme Issuing")
    record = add_ca_certificate(db, "acme", intermediate.der, source="aws-pca")
    assert record.cert_type == "intermediate"
    assert record.issuer == "CN=Acme Root"
    assert record.source == "aws-pca"


def test_add_root_as_intermediate_is_rejected(db: Database, root: SigningCa) -> None:
    with pytest.raises(InvalidCertificate):
        add_ca_certificate(db, "acme", root.pem, cert_type="intermediate")
    assert list_ca_certificates(db, "acme") == []


def test_add_unknown_type_is_invalid_input(db: Database, root: SigningCa) -> None:
    with pytest.raises(InvalidInput, match="'leaf'"):
        add_ca_certificate(db, "acme", root.pem, cert_type="leaf")  # type: ignore[arg-type]


def test_add_expired_ca_is_rejected(db: Database, root: SigningCa) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    with pytest.raises(InvalidCertificate):
        add_ca_certificate(db, "acme", root.pem, now=later)


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(b"", id="fail/empty"),
        pytest.param(b"not a certificate", id="fail/garbage"),
    ],
)
def test_add_garbage_is_invalid_certificate(db: Database, encoded: bytes) -> None:
    with pytest.raises(InvalidCertificate):
        add_ca_certificate(db, "acme", encoded)


def test_add_over_size_limit_is_rejected(db: Database) -> None:
    garbage = b"x" * (MAX_FILE_BYTES + 1)

    with pytest.raises(PayloadTooLarge, match=f"the maximum is {MAX_FILE_BYTES}"):
        add_ca_certificate(db, "acme", garbage)


def test_add_at_size_limit_is_parsed(db: Database, root: SigningCa) -> None:
    padded = root.pem + b"\n" * (MAX_FILE_BYTES - len(root.pem))

    record = add_ca_certificate(db, "acme", padded)

    assert record.fingerprint == root.certificate.fingerprint(hashes.SHA256()).hex()


def test_add_bundle_is_rejected(db: Database, root: SigningCa) -> None:
    bundle = root.pem + make_intermediate(root).pem
    with pytest.raises(InvalidCertificate, match="2 certificates"):
        add_ca_certificate(db, "acme", bundle)


def test_add_duplicate_names_fingerprint(db: Database, root: SigningCa) -> None:
    record = add_ca_certificate(db, "acme", root.pem)
    with pytest.raises(Conflict, match=record.fingerprint):
        add_ca_certificate(db, "acme", root.der)
    assert len(list_ca_certificates(db, "acme")) == 1


def test_same_ca_in_two_projects(db: Database, root: SigningCa) -> None:
    first = add_ca_certificate(db, "acme", root.pem)
    second = add_ca_certificate(db, "other", root.pem)
    assert first.id != second.id
    assert first.fingerprint == second.fingerprint


def test_add_to_unknown_project_is_not_found(db: Database, root: SigningCa) -> None:
    with pytest.raises(NotFound):
        add_ca_certificate(db, "nobody", root.pem)


def test_list_is_scoped_and_ordered(db: Database, root: SigningCa) -> None:
    first = add_ca_certificate(db, "acme", root.pem)
    second = add_ca_certificate(db, "acme", make_intermediate(root).pem)
    add_ca_certificate(db, "other", make_root("Other Root").pem)
    assert [ca.id for ca in list_ca_certificates(db, "acme")] == [first.id, second.id]


def test_list_unknown_project_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        list_ca_certificates(db, "nobody")


def test_other_project_is_not_found(db: Database, root: SigningCa) -> None:
    record = add_ca_certificate(db, "acme", root.pem)
    with pytest.raises(NotFound):
        get_ca_certificate(db, "other", record.id)
    with pytest.raises(NotFound):
        set_ca_certificate_enabled(db, "other", record.id, False)
    with pytest.raises(NotFound):
        delete_ca_certificate(db, "other", record.id)
    assert get_ca_certificate(db, "acme", record.id).enabled is True


def test_set_enabled(db: Database, root: SigningCa) -> None:
    record = add_ca_certificate(db, "acme", root.pem)
    assert set_ca_certificate_enabled(db, "acme", record.id, False).enabled is False
    assert get_ca_certificate(db, "acme", record.id).enabled is False
    assert set_ca_certificate_enabled(db, "acme", record.id, True).enabled is True


def test_delete(db: Database, root: SigningCa) -> None:
    record = add_ca_certificate(db, "acme", root.pem)
    delete_ca_certificate(db, "acme", record.id)
    with pytest.raises(NotFound):
        get_ca_certificate(db, "acme", record.id)
    with pytest.raises(NotFound):
        delete_ca_certificate(db, "acme", record.id)


def test_trust_for_unknown_project_is_none(db: Database) -> None:
    assert trust_for(db, "nobody") is None


def test_trust_for_project_without_ca(db: Database) -> None:
    trust = trust_for(db, "acme")
    assert trust is not None
    assert list(trust.anchors) == []


def test_trust_for_loads_enabled_anchors(db: Database, root: SigningCa) -> None:
    enabled = add_ca_certificate(db, "acme", root.pem)
    disabled = add_ca_certificate(db, "acme", make_intermediate(root).pem)
    set_ca_certificate_enabled(db, "acme", disabled.id, False)
    add_ca_certificate(db, "other", make_root("Other Root").pem)

    trust = trust_for(db, "acme")

    assert trust is not None
    assert [anchor.ca_id for anchor in trust.anchors] == [enabled.id]
    assert trust.anchors[0].fingerprint == enabled.fingerprint
    assert trust.anchors[0].certificate == root.certificate
    assert trust.policy.require_v3 is False


def test_trust_for_carries_project_policy(db: Database) -> None:
    trust = trust_for(db, "other")
    assert trust is not None
    assert trust.policy.require_v3 is True


def test_trust_version_of_unknown_project_is_empty(db: Database) -> None:
    assert trust_version(db, "nowhere") == ()


def test_trust_version_unchanged_without_change(db: Database, root: SigningCa) -> None:
    add_ca_certificate(db, "acme", root.pem)

    assert trust_version(db, "acme") == trust_version(db, "acme")


def test_trust_version_follows_ca_changes(db: Database, root: SigningCa) -> None:
    empty = trust_version(db, "acme")
    record = add_ca_certificate(db, "acme", root.pem)
    added = trust_version(db, "acme")
    set_ca_certificate_enabled(db, "acme", record.id, False)
    disabled = trust_version(db, "acme")
    set_ca_certificate_enabled(db, "acme", record.id, True)
    enabled = trust_version(db, "acme")
    delete_ca_certificate(db, "acme", record.id)
    deleted = trust_version(db, "acme")

    assert added != empty
    assert disabled != added
    assert disabled == empty
    assert enabled == added
    assert deleted == empty


def test_trust_version_follows_policy(db: Database) -> None:
    assert trust_version(db, "acme") != trust_version(db, "other")


def test_trust_version_is_per_project(db: Database, root: SigningCa) -> None:
    before = trust_version(db, "other")
    add_ca_certificate(db, "acme", root.pem)

    assert trust_version(db, "other") == before
