"""Management API keys: issue, list, revoke, authenticate."""

from __future__ import annotations

import datetime as dt

import pytest

from fleetgate.errors import InvalidInput, NotFound, Reason, Unauthenticated
from fleetgate.store import apikeys
from fleetgate.store.database import Database
from fleetgate.store.models import ApiKey
from fleetgate.store.projects import create_project


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, "acme")
    create_project(database, "other")
    return database


def test_issued_key_authenticates(db: Database) -> None:
    issued = apikeys.create_api_key(db, "acme", name="ci", actor="cli")
    key = apikeys.authenticate(db, issued.secret)
    assert key.id == issued.record.id
    assert key.project_id == "acme"
    assert key.is_admin is False
    assert issued.secret.startswith("fgk_")
    assert len(issued.secret) == apikeys.KEY_LENGTH
    assert issued.record.prefix == issued.secret[: apikeys.PREFIX_LENGTH]


def test_only_hash_is_stored(db: Database) -> None:
    issued = apikeys.create_api_key(db, "acme", actor="cli")
    with db.session(read_only=True) as session:
        row = session.get(ApiKey, issued.record.id)
        assert row is not None
        stored = (row.prefix, row.secret_hash, row.name)
    assert issued.secret not in stored
    assert stored[1] == apikeys.hash_key(issued.secret)


def test_secret_is_not_in_repr(db: Database) -> None:
    issued = apikeys.create_api_key(db, "acme", actor="cli")
    assert issued.secret not in repr(issued)


@pytest.mark.parametrize(
    "presented",
    [
        pytest.param("", id="fail/empty"),
        pytest.param("not-a-key", id="fail/wrong-shape"),
        pytest.param("fgk_" + "A" * 43, id="fail/unknown"),
    ],
)
def test_invalid_key_is_rejected(db: Database, presented: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        apikeys.authenticate(db, presented)
    assert caught.value.reason is Reason.INVALID_API_KEY


def test_wrong_secret_same_prefix_rejected(db: Database) -> None:
    issued = apikeys.create_api_key(db, "acme", actor="cli")
    last = "B" if issued.secret[-1] != "B" else "C"
    with pytest.raises(Unauthenticated) as caught:
        apikeys.authenticate(db, issued.secret[:-1] + last)
    assert caught.value.reason is Reason.INVALID_API_KEY


def test_revoked_key_is_rejected(db: Database) -> None:
    issued = apikeys.create_api_key(db, "acme", actor="cli")
    revoked = apikeys.revoke_api_key(db, "acme", issued.record.id, actor="cli")
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated) as caught:
        apikeys.authenticate(db, issued.secret)
    assert caught.value.reason is Reason.REVOKED_API_KEY


def test_revoke_twice_keeps_first_time(db: Database) -> None:
    issued = apikeys.create_api_key(db, "acme", actor="cli")
    first = apikeys.revoke_api_key(db, "acme", issued.record.id, actor="cli")
    second = apikeys.revoke_api_key(db, "acme", issued.record.id, actor="cli")
    assert second.revoked_at == first.revoked_at


def test_revoke_other_projects_key_is_not_found(db: Database) -> None:
    issued = apikeys.create_api_key(db, "acme", actor="cli")
    with pytest.raises(NotFound):
        apikeys.revoke_api_key(db, "other", issued.record.id, actor="cli")
    assert apikeys.authenticate(db, issued.secret).id == issued.record.id


def test_list_is_scoped_and_has_no_secret(db: Database) -> None:
    acme = apikeys.create_api_key(db, "acme", name="one", actor="cli")
    apikeys.create_api_key(db, "other", actor="cli")
    admin = apikeys.create_api_key(db, None, actor="cli")
    assert [key.id for key in apikeys.list_api_keys(db, "acme")] == [acme.record.id]
    assert [key.id for key in apikeys.list_api_keys(db, None)] == [admin.record.id]
    assert not hasattr(apikeys.list_api_keys(db, "acme")[0], "secret")


def test_key_for_unknown_project_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        apikeys.create_api_key(db, "nobody", actor="cli")


def test_empty_name_is_invalid(db: Database) -> None:
    with pytest.raises(InvalidInput):
        apikeys.create_api_key(db, "acme", name="  ", actor="cli")


def test_ensure_admin_key_once(db: Database) -> None:
    first = apikeys.ensure_admin_key(db, actor="cli")
    second = apikeys.ensure_admin_key(db, actor="cli")
    assert first is not None
    assert first.record.is_admin is True
    assert second is None


def test_ensure_admin_key_after_revoking_the_last(db: Database) -> None:
    first = apikeys.ensure_admin_key(db, actor="cli")
    assert first is not None
    apikeys.revoke_api_key(db, None, first.record.id, actor="cli")
    replacement = apikeys.ensure_admin_key(db, actor="cli")
    assert replacement is not None
    assert replacement.record.id != first.record.id


def test_last_used_updates_once_a_minute(db: Database) -> None:
    issued = apikeys.create_api_key(db, "acme", actor="cli")
    start = dt.datetime.now(dt.UTC)
    apikeys.authenticate(db, issued.secret, now=start)
    apikeys.authenticate(db, issued.secret, now=start + dt.timedelta(seconds=30))
    [after_30s] = apikeys.list_api_keys(db, "acme")
    apikeys.authenticate(db, issued.secret, now=start + dt.timedelta(minutes=2))
    [after_2m] = apikeys.list_api_keys(db, "acme")
    assert after_30s.last_used_at == start
    assert after_2m.last_used_at == start + dt.timedelta(minutes=2)
