"""The audit log: store functions given an actor record what they changed."""

from __future__ import annotations

import pytest

from fleetgate.errors import Conflict, InvalidInput, NotFound
from fleetgate.store import apikeys, certificates, devices, state
from fleetgate.store.audit import AuditRecord, list_audit_entries
from fleetgate.store.database import MAX_PAGE, Database
from fleetgate.store.projects import create_project

from .certs import make_root


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, "acme", actor="cli")
    return database


def entries(db: Database, project_id: str = "acme") -> list[AuditRecord]:
    return list_audit_entries(db, project_id).items


def test_project_creation_is_audited(db: Database) -> None:
    [entry] = entries(db)
    assert entry.action == "project.create"
    assert entry.actor == "cli"
    assert (entry.target_type, entry.target_id) == ("project", "acme")
    assert entry.details == {"name": "acme", "requireV3": False}


def test_no_actor_writes_no_entry(db: Database) -> None:
    devices.create_device(db, "acme", "pump-1")
    assert [entry.action for entry in entries(db)] == ["project.create"]


def test_ca_life_is_audited_newest_first(db: Database) -> None:
    root = make_root()
    ca = certificates.add_ca_certificate(db, "acme", root.pem, actor="key-1")
    certificates.set_ca_certificate_enabled(db, "acme", ca.id, False, actor="key-1")
    certificates.set_ca_certificate_enabled(db, "acme", ca.id, False, actor="key-1")
    certificates.delete_ca_certificate(db, "acme", ca.id, actor="key-1")
    listed = entries(db)
    assert [entry.action for entry in listed] == [
        "ca.delete",
        "ca.disable",
        "ca.create",
        "project.create",
    ]
    assert listed[0].details["fingerprint"] == ca.fingerprint
    assert listed[0].target_id == ca.id


def test_device_update_names_changed_fields(db: Database) -> None:
    device = devices.create_device(db, "acme", "pump-1", actor="cli")
    devices.update_device(
        db,
        "acme",
        device.id,
        name="pump-2",
        tags=["new"],
        metadata={},
        actor="cli",
    )
    latest = entries(db)[0]
    assert latest.action == "device.update"
    assert latest.details == {"changed": ["name", "tagIds"], "name": "pump-2"}


def test_device_update_without_change_writes_no_entry(db: Database) -> None:
    device = devices.create_device(db, "acme", "pump-1", actor="cli")
    devices.update_device(db, "acme", device.id, name="pump-1", actor="cli")
    assert entries(db)[0].action == "device.create"


def test_failed_action_writes_no_entry(db: Database) -> None:
    devices.create_device(db, "acme", "pump-1", actor="cli")
    with pytest.raises(Conflict):
        devices.create_device(db, "acme", "pump-1", actor="cli")
    assert [entry.action for entry in entries(db)] == [
        "device.create",
        "project.create",
    ]


def test_state_changes_are_audited_by_path(db: Database) -> None:
    device = devices.create_device(db, "acme", "pump-1")
    state.set_state(db, device.id, ("config", "rate"), 5, project_id="acme", actor="k")
    state.delete_state(db, device.id, ("config",), project_id="acme", actor="k")
    deleted, written = entries(db)[:2]
    assert (written.action, written.details) == ("state.set", {"path": "/config/rate"})
    assert (deleted.action, deleted.details) == ("state.delete", {"path": "/config"})
    assert "5" not in str(written.details)


def test_api_key_entries_hold_no_secret(db: Database) -> None:
    issued = apikeys.create_api_key(db, "acme", name="ci", actor="cli")
    apikeys.revoke_api_key(db, "acme", issued.record.id, actor="cli")
    revoked, created = entries(db)[:2]
    assert created.action == "apikey.create"
    assert revoked.action == "apikey.revoke"
    for entry in (created, revoked):
        assert issued.secret not in str(entry.details)
        assert entry.details["prefix"] == issued.record.prefix


def test_pages_count_from_zero(db: Database) -> None:
    for index in range(4):
        devices.create_device(db, "acme", f"pump-{index}", actor="cli")
    page = list_audit_entries(db, "acme", page=1, per_page=2)
    assert page.total == 5
    assert [entry.details["name"] for entry in page.items] == ["pump-1", "pump-0"]


def test_unknown_project_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        list_audit_entries(db, "nobody")


def test_bad_paging_is_invalid(db: Database) -> None:
    with pytest.raises(InvalidInput):
        list_audit_entries(db, "acme", per_page=0)
    with pytest.raises(InvalidInput):
        list_audit_entries(db, "acme", page=MAX_PAGE + 1)
    with pytest.raises(InvalidInput):
        list_audit_entries(db, "acme", page=2**63, per_page=1000)


def test_last_allowed_page_is_empty(db: Database) -> None:
    page = list_audit_entries(db, "acme", page=MAX_PAGE, per_page=1000)
    assert page.items == []
