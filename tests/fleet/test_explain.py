"""Explanations of device chains: verdict, rules, association, expiry."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from fleetgate import provisioning
from fleetgate.errors import NotFound, Reason
from fleetgate.explain import explain_certificate
from fleetgate.pki import tools
from fleetgate.pki.identity import fingerprint
from fleetgate.store import devices, manifests, projects
from fleetgate.store.database import Database
from fleetgate.store.models import AuditEntry, Device

from .pki import PROJECT, ProjectPki


@pytest.fixture
def pki(database: Database) -> ProjectPki:
    return ProjectPki(database)


def _rows(db: Database) -> list[tuple[object, ...]]:
    with db.session(read_only=True) as session:
        device_rows = session.execute(select(Device).order_by(Device.id)).scalars()
        snapshot: list[tuple[object, ...]] = [
            (
                row.id,
                row.name,
                row.certificate_id,
                row.enabled,
                row.last_seen_at,
                row.last_certificate_fingerprint,
                row.ca_chain,
            )
            for row in device_rows
        ]
        snapshot.append(("audit", len(session.scalars(select(AuditEntry)).all())))
    return snapshot


def _connect(db: Database, chain: list, certificate_id: str) -> None:
    leaf = chain[0]
    provisioning.associate(
        db,
        project_id=PROJECT,
        certificate_id=certificate_id,
        fingerprint=fingerprint(leaf),
        not_after=leaf.not_valid_after_utc,
    )


def test_accepted_chain_names_anchor_and_depth(pki: ProjectPki) -> None:
    chain = pki.device("sensor-1", via_intermediate=True)

    explanation = explain_certificate(pki.db, PROJECT, chain)

    assert explanation.accepted
    assert explanation.anchor is not None
    assert explanation.anchor.fingerprint == fingerprint(pki.root)
    assert explanation.anchor.depth == 2
    assert explanation.anchor.ca_id == pki.root_record.id
    assert [member.role for member in explanation.chain] == [
        "leaf",
        "intermediate",
        "anchor",
    ]
    assert all(outcome.passed for outcome in explanation.rules)


def test_rules_cover_leaf_and_every_ca(pki: ProjectPki) -> None:
    chain = pki.device("sensor-1", via_intermediate=True)

    explanation = explain_certificate(pki.db, PROJECT, chain)

    checked = {(outcome.depth, outcome.rule) for outcome in explanation.rules}
    assert (0, "validity period") in checked
    assert (0, "key type") in checked
    assert (1, "CA rules") in checked
    assert (2, "validity period") in checked
    assert (2, "path to a registered CA") in checked


def test_first_expiry_is_the_leaf_before_its_cas(pki: ProjectPki) -> None:
    chain = pki.device("sensor-1", via_intermediate=True, days=10)

    explanation = explain_certificate(pki.db, PROJECT, chain)

    assert explanation.first_expiry.role == "leaf"
    assert explanation.first_expiry.not_after == chain[0].not_valid_after_utc


def test_first_expiry_is_an_intermediate_expiring_sooner(
    database: Database,
) -> None:
    pki = ProjectPki(database, intermediate_days=5)
    chain = pki.device("sensor-1", via_intermediate=True, days=30)

    explanation = explain_certificate(database, PROJECT, chain)

    assert explanation.first_expiry.role == "intermediate"
    assert explanation.first_expiry.not_after == pki.intermediate.not_valid_after_utc


def test_association_existing_device(pki: ProjectPki) -> None:
    chain = pki.device("sensor-1")
    _connect(pki.db, chain, "sensor-1")

    preview = explain_certificate(pki.db, PROJECT, chain).association

    assert preview is not None
    assert preview.rule == "existing"
    assert preview.device_name == "sensor-1"
    assert preview.reason is None


def test_association_adopts_device_by_name(pki: ProjectPki) -> None:
    record = devices.create_device(pki.db, PROJECT, "sensor-1")

    preview = explain_certificate(pki.db, PROJECT, pki.device("sensor-1")).association

    assert preview is not None
    assert preview.rule == "adopt"
    assert preview.device_id == record.id


def test_association_creates_device(pki: ProjectPki) -> None:
    preview = explain_certificate(pki.db, PROJECT, pki.device("sensor-1")).association

    assert preview is not None
    assert preview.rule == "create"
    assert preview.device_name == "sensor-1"
    assert preview.device_id is None


def test_association_suffix_when_name_taken(pki: ProjectPki) -> None:
    devices.create_device(pki.db, PROJECT, "sensor-1", certificate_id="other-id")

    preview = explain_certificate(pki.db, PROJECT, pki.device("sensor-1")).association

    assert preview is not None
    assert preview.rule == "create_with_suffix"
    assert preview.device_name == "sensor-1-XXXXXX"


def test_association_disabled_device_rejected(pki: ProjectPki) -> None:
    record = devices.create_device(
        pki.db, PROJECT, "sensor-1", certificate_id="sensor-1"
    )
    devices.set_device_enabled(pki.db, PROJECT, record.id, False)

    preview = explain_certificate(pki.db, PROJECT, pki.device("sensor-1")).association

    assert preview is not None
    assert preview.reason is Reason.DEVICE_DISABLED


def test_association_unlisted_under_require_manifest(pki: ProjectPki) -> None:
    manifests.set_require_manifest(pki.db, PROJECT, True, actor="test")

    preview = explain_certificate(pki.db, PROJECT, pki.device("sensor-9")).association

    assert preview is not None
    assert preview.rule == "create"
    assert preview.reason is Reason.NOT_IN_MANIFEST


def test_unknown_ca_is_rejected_with_reason(pki: ProjectPki) -> None:
    other_key, other_root = tools.make_root("Stranger Root")
    key = tools.make_device_key()
    csr = tools.make_device_csr(key, PROJECT, "sensor-1")
    leaf = tools.sign_device_csr(csr, other_key, other_root)

    explanation = explain_certificate(pki.db, PROJECT, [leaf])

    assert not explanation.accepted
    assert explanation.reason is Reason.UNKNOWN_CA
    assert explanation.anchor is None
    failed = [outcome for outcome in explanation.rules if not outcome.passed]
    assert [outcome.reason for outcome in failed] == [Reason.UNKNOWN_CA]


def test_expired_leaf_fails_validity_rule_only(pki: ProjectPki) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
    chain = pki.device("sensor-1", not_before=long_ago, days=30)

    explanation = explain_certificate(pki.db, PROJECT, chain)

    assert explanation.reason is Reason.EXPIRED
    failed = [(o.depth, o.rule) for o in explanation.rules if not o.passed]
    assert failed == [(0, "validity period")]
    assert explanation.first_expiry.not_after < dt.datetime.now(dt.UTC)


def test_wrong_project_is_not_checked_there(pki: ProjectPki) -> None:
    projects.create_project(pki.db, "other")
    chain = pki.device("sensor-1", project="other")

    explanation = explain_certificate(pki.db, PROJECT, chain)

    assert explanation.reason is Reason.WRONG_PROJECT
    assert explanation.association is None
    assert explanation.rules[-1].rule == "project"


def test_unknown_project_is_not_found(pki: ProjectPki) -> None:
    with pytest.raises(NotFound):
        explain_certificate(pki.db, "missing", pki.device("sensor-1"))


@pytest.mark.parametrize("case", ["existing", "adopt", "create", "rejected"])
def test_explanation_changes_nothing(pki: ProjectPki, case: str) -> None:
    chain = pki.device("sensor-1")
    if case == "existing":
        _connect(pki.db, chain, "sensor-1")
    elif case == "adopt":
        devices.create_device(pki.db, PROJECT, "sensor-1")
    elif case == "rejected":
        chain = pki.device("sensor-1", project="nobody")
    before = _rows(pki.db)

    explain_certificate(pki.db, PROJECT, chain)

    assert _rows(pki.db) == before


def test_json_has_api_field_names(pki: ProjectPki) -> None:
    chain = pki.device("sensor-1", via_intermediate=True)

    body = explain_certificate(pki.db, PROJECT, chain).to_json()

    assert body["depth"] == 2
    assert body["anchor"]["caId"] == pki.root_record.id
    assert body["association"]["rule"] == "create"
    assert body["firstExpiry"]["notAfter"] == chain[0].not_valid_after_utc.isoformat()
    assert body["chain"][1]["fingerprint"] == fingerprint(pki.intermediate)
    assert pki.intermediate.public_bytes(Encoding.PEM) not in repr(body).encode()


def test_disabled_device_makes_verdict_rejected(pki: ProjectPki) -> None:
    record = devices.create_device(
        pki.db, PROJECT, "sensor-1", certificate_id="sensor-1"
    )
    devices.set_device_enabled(pki.db, PROJECT, record.id, False)

    explanation = explain_certificate(pki.db, PROJECT, pki.device("sensor-1"))

    assert not explanation.accepted
    assert explanation.chain_accepted
    assert explanation.reason is Reason.DEVICE_DISABLED
    assert explanation.message.startswith("the chain verifies, but")


def test_unlisted_device_makes_verdict_rejected(pki: ProjectPki) -> None:
    manifests.set_require_manifest(pki.db, PROJECT, True, actor="test")

    explanation = explain_certificate(pki.db, PROJECT, pki.device("sensor-9"))

    assert not explanation.accepted
    assert explanation.reason is Reason.NOT_IN_MANIFEST


def test_rejected_chain_has_no_association(pki: ProjectPki) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
    chain = pki.device("sensor-1", not_before=long_ago, days=30)

    explanation = explain_certificate(pki.db, PROJECT, chain)
    body = explanation.to_json()

    assert explanation.association is None
    assert body["chainAccepted"] is False
    assert body["association"] is None
