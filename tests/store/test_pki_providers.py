"""Stored PKI provider configurations and their status."""

from __future__ import annotations

import datetime as dt

import pytest

from fleetgate.errors import InvalidInput, NotFound
from fleetgate.store.database import Database
from fleetgate.store.pki_providers import (
    get_provider_config,
    list_provider_configs,
    record_provider_status,
    set_provider_config,
)
from fleetgate.store.projects import create_project

NOW = dt.datetime(2026, 12, 11, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, "acme")
    create_project(database, "other")
    return database


def test_unconfigured_project_is_offline(db: Database) -> None:
    config = get_provider_config(db, "acme")
    assert config.kind == "offline"
    assert config.status == "offline"
    assert config.max_rotations_per_hour == 10
    assert config.settings == {}


def test_unknown_project_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        get_provider_config(db, "nope")


def test_set_then_get_round_trips(db: Database) -> None:
    settings = {"ca_key": "/k.pem", "ca_cert": "/c.pem", "days": 30}
    stored = set_provider_config(
        db, "acme", "local", settings, status="configured", max_rotations_per_hour=3
    )
    assert stored == get_provider_config(db, "acme")
    assert stored.kind == "local"
    assert stored.settings == settings
    assert stored.max_rotations_per_hour == 3
    assert stored.last_sync_at is None


def test_set_again_replaces_and_keeps_limit(db: Database) -> None:
    set_provider_config(
        db, "acme", "local", {"a": 1}, status="configured", max_rotations_per_hour=3
    )
    record_provider_status(
        db, "acme", status="error", error="broken", ca_count=2, synced_at=NOW
    )
    replaced = set_provider_config(db, "acme", "aws-pca", {"b": 2}, status="configured")
    assert replaced.kind == "aws-pca"
    assert replaced.settings == {"b": 2}
    assert replaced.max_rotations_per_hour == 3
    assert replaced.error is None
    assert replaced.ca_count == 0
    assert replaced.last_sync_at is None


def test_limit_below_one_is_invalid(db: Database) -> None:
    with pytest.raises(InvalidInput):
        set_provider_config(
            db, "acme", "local", {}, status="configured", max_rotations_per_hour=0
        )


def test_limit_beyond_max_is_invalid(db: Database) -> None:
    with pytest.raises(InvalidInput, match="expected 1-3600 per hour"):
        set_provider_config(
            db, "acme", "local", {}, status="configured", max_rotations_per_hour=2**70
        )


def test_record_status_stores_outcome(db: Database) -> None:
    set_provider_config(db, "acme", "local", {}, status="configured")
    record_provider_status(
        db, "acme", status="connected", error=None, ca_count=2, synced_at=NOW
    )
    config = get_provider_config(db, "acme")
    assert config.status == "connected"
    assert config.ca_count == 2
    assert config.last_sync_at == NOW


def test_record_status_cuts_long_error(db: Database) -> None:
    set_provider_config(db, "acme", "local", {}, status="configured")
    record_provider_status(db, "acme", status="error", error="x" * 5000)
    error = get_provider_config(db, "acme").error
    assert error is not None
    assert len(error) == 1024
    assert error.endswith("...")


def test_record_status_without_row_is_no_op(db: Database) -> None:
    record_provider_status(db, "acme", status="error", error="ignored")
    assert get_provider_config(db, "acme").status == "offline"


def test_list_filters_by_kind(db: Database) -> None:
    set_provider_config(db, "acme", "local", {}, status="configured")
    set_provider_config(db, "other", "offline", {}, status="offline")
    assert [c.project_id for c in list_provider_configs(db)] == ["acme", "other"]
    local = list_provider_configs(db, kinds=("local", "aws-pca"))
    assert [c.project_id for c in local] == ["acme"]
