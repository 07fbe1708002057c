"""The association rule: find, adopt or create, race-free."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Callable

import pytest

from fleetgate.errors import Conflict, DeviceRejected, InvalidInput, Reason
from fleetgate.provisioning import AssociatedDevice, associate
from fleetgate.store.database import Database
from fleetgate.store.devices import (
    create_device,
    get_device,
    list_devices,
    set_certificate_id,
    set_device_enabled,
)
from fleetgate.store.projects import create_project

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
FINGERPRINT = "ab" * 32

# Simultaneous first connections in the race tests.
CONCURRENT_DEVICES = 200


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, "acme")
    create_project(database, "other")
    return database


def connect(
    db: Database,
    certificate_id: str,
    *,
    project_id: str = "acme",
    fingerprint: str = FINGERPRINT,
    now: dt.datetime = NOW,
) -> AssociatedDevice:
    return associate(
        db,
        project_id=project_id,
        certificate_id=certificate_id,
        fingerprint=fingerprint,
        not_after=NOT_AFTER,
        now=now,
    )


def test_first_connection_creates_device(db: Database) -> None:
    associated = connect(db, "serial-1")
    device = get_device(db, "acme", associated.device_id)
    assert associated.created is True
    assert associated.adopted is False
    assert associated.name == "serial-1"
    assert associated.project_id == "acme"
    assert associated.certificate_id == "serial-1"
    assert device.name == "serial-1"
    assert device.certificate_id == "serial-1"
    assert device.enabled is True


def test_connection_records_last_seen(db: Database) -> None:
    associated = connect(db, "serial-1")
    device = get_device(db, "acme", associated.device_id)
    assert device.last_seen_at == NOW
    assert device.last_certificate_fingerprint == FINGERPRINT
    assert device.last_certificate_not_after == NOT_AFTER


def test_known_certificate_id_associates(db: Database) -> None:
    first = connect(db, "serial-1")
    later = NOW + dt.timedelta(hours=1)
    again = connect(db, "serial-1", fingerprint="cd" * 32, now=later)
    device = get_device(db, "acme", first.device_id)
    assert again.device_id == first.device_id
    assert again.created is False
    assert again.adopted is False
    assert device.last_seen_at == later
    assert device.last_certificate_fingerprint == "cd" * 32


def test_known_certificate_id_wins_over_name(db: Database) -> None:
    # A renamed device keeps its certificate ID, and a device named
    # after that ID without one is left alone.
    holder = create_device(db, "acme", "pump", certificate_id="serial-1")
    create_device(db, "acme", "serial-1")
    associated = connect(db, "serial-1")
    assert associated.device_id == holder.id
    assert associated.adopted is False


def test_device_named_after_id_is_adopted(db: Database) -> None:
    provisioned = create_device(db, "acme", "serial-1")
    associated = connect(db, "serial-1")
    assert associated.device_id == provisioned.id
    assert associated.adopted is True
    assert associated.created is False
    assert get_device(db, "acme", provisioned.id).certificate_id == "serial-1"
    assert connect(db, "serial-1").adopted is False


def test_name_taken_by_other_certificate_gets_suffix(db: Database) -> None:
    holder = create_device(db, "acme", "serial-1", certificate_id="other-cert")
    associated = connect(db, "serial-1")
    assert associated.created is True
    assert associated.device_id != holder.id
    assert re.fullmatch(r"serial-1-[0-9a-f]{6}", associated.name)
    assert get_device(db, "acme", holder.id).certificate_id == "other-cert"
    assert connect(db, "serial-1").device_id == associated.device_id


def test_certificate_ids_are_case_sensitive(db: Database) -> None:
    lower = connect(db, "abc")
    upper = connect(db, "ABC")
    assert lower.device_id != upper.device_id


def test_projects_are_separate(db: Database) -> None:
    acme = connect(db, "serial-1")
    other = connect(db, "serial-1", project_id="other")
    assert acme.device_id != other.device_id
    assert other.name == "serial-1"


def test_certificate_id_cannot_change_after_association(db: Database) -> None:
    associated = connect(db, "serial-1")
    with pytest.raises(Conflict):
        set_certificate_id(db, "acme", associated.device_id, "serial-2")
    assert get_device(db, "acme", associated.device_id).certificate_id == "serial-1"


def test_disabled_device_is_rejected(db: Database) -> None:
    associated = connect(db, "serial-1")
    set_device_enabled(db, "acme", associated.device_id, False)
    with pytest.raises(DeviceRejected) as caught:
        connect(db, "serial-1", now=NOW + dt.timedelta(hours=1))
    assert caught.value.reason is Reason.DEVICE_DISABLED
    assert caught.value.project_id == "acme"
    assert caught.value.certificate_id == "serial-1"
    assert caught.value.fingerprint == FINGERPRINT
    assert get_device(db, "acme", associated.device_id).last_seen_at == NOW


def test_disabled_pre_provisioned_device_is_not_adopted(db: Database) -> None:
    provisioned = create_device(db, "acme", "serial-1")
    set_device_enabled(db, "acme", provisioned.id, False)
    with pytest.raises(DeviceRejected):
        connect(db, "serial-1")
    assert get_device(db, "acme", provisioned.id).certificate_id is None


def test_unknown_project_is_rejected(db: Database) -> None:
    with pytest.raises(DeviceRejected) as caught:
        connect(db, "serial-1", project_id="nobody")
    assert caught.value.reason is Reason.UNKNOWN_PROJECT


def test_invalid_certificate_id_is_rejected(db: Database) -> None:
    with pytest.raises(InvalidInput):
        connect(db, "serial 1")


def test_naive_datetime_is_rejected(db: Database) -> None:
    with pytest.raises(ValueError):
        connect(db, "serial-1", now=NOW.replace(tzinfo=None))


def test_creation_and_adoption_are_logged(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    create_device(db, "acme", "adopted-1")
    with caplog.at_level(logging.INFO, logger="fleetgate.provisioning"):
        created = connect(db, "created-1")
        connect(db, "adopted-1")
        connect(db, "created-1")
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("device created project=acme")
    assert f"device={created.device_id}" in messages[0]
    assert "cert_id=created-1" in messages[0]
    assert messages[1].startswith("device adopted project=acme")


def run_at_once(count: int, target: Callable[[int], AssociatedDevice]) -> list[str]:
    """Call ``target(0..count-1)`` from ``count`` threads released together."""
    barrier = threading.Barrier(count, timeout=60)
    device_ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        try:
            barrier.wait()
            device_id = target(index).device_id
        except BaseException as exc:  # reported by the caller's assert
            with lock:
                errors.append(exc)
            return
        with lock:
            device_ids.append(device_id)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return device_ids


def test_simultaneous_first_connections_make_one_device(db: Database) -> None:
    device_ids = run_at_once(CONCURRENT_DEVICES, lambda _: connect(db, "serial-1"))
    page = list_devices(db, "acme")
    assert len(device_ids) == CONCURRENT_DEVICES
    assert len(set(device_ids)) == 1
    assert page.total == 1
    assert page.items[0].certificate_id == "serial-1"


def test_simultaneous_adoptions_adopt_once(db: Database) -> None:
    provisioned = create_device(db, "acme", "serial-1")
    device_ids = run_at_once(CONCURRENT_DEVICES, lambda _: connect(db, "serial-1"))
    assert set(device_ids) == {provisioned.id}
    assert list_devices(db, "acme").total == 1


def test_simultaneous_distinct_ids_make_distinct_devices(db: Database) -> None:
    device_ids = run_at_once(
        CONCURRENT_DEVICES, lambda index: connect(db, f"serial-{index}")
    )
    page = list_devices(db, "acme", per_page=1000)
    assert len(set(device_ids)) == CONCURRENT_DEVICES
    assert page.total == CONCURRENT_DEVICES
    assert {device.certificate_id for device in page.items} == {
        f"serial-{index}" for index in range(CONCURRENT_DEVICES)
    }


def test_suffix_collision_draws_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_device(db, "acme", "serial-1", certificate_id="owner")
    create_device(db, "acme", "serial-1-aaaaaa")
    suffixes = iter(["aaaaaa", "bbbbbb"])
    monkeypatch.setattr("fleetgate.provisioning.random_suffix", lambda: next(suffixes))
    assert connect(db, "serial-1").name == "serial-1-bbbbbb"


def test_suffixes_exhausted_is_conflict(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_device(db, "acme", "serial-1", certificate_id="owner")
    create_device(db, "acme", "serial-1-aaaaaa")
    monkeypatch.setattr("fleetgate.provisioning.random_suffix", lambda: "aaaaaa")
    with pytest.raises(Conflict, match="'serial-1'"):
        connect(db, "serial-1")
    assert list_devices(db, "acme").total == 2
