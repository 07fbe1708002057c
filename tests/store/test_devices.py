"""Device records: create, get, list, update, delete, scoped by project."""

from __future__ import annotations

import pytest

from fleetgate.errors import Conflict, InvalidInput, NotFound, Reason
from fleetgate.store.database import MAX_PAGE, Database
from fleetgate.store.devices import (
    create_device,
    delete_device,
    device_enabled,
    find_device,
    get_device,
    list_devices,
    set_certificate_id,
    set_device_enabled,
    update_device,
)
from fleetgate.store.projects import create_project


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, "acme")
    create_project(database, "other")
    return database


def test_create_and_get(db: Database) -> None:
    device = create_device(
        db, "acme", "pump-1", hardware_ids=["mac:01"], tags=["t"], metadata={"k": 1}
    )
    stored = get_device(db, "acme", device.id)
    assert stored == device
    assert stored.certificate_id is None
    assert stored.enabled is True
    assert stored.hardware_ids == ("mac:01",)
    assert stored.tags == ("t",)
    assert stored.metadata == {"k": 1}
    assert stored.last_seen_at is None


def test_create_in_unknown_project_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        create_device(db, "nobody", "pump-1")


def test_create_duplicate_name_is_conflict(db: Database) -> None:
    create_device(db, "acme", "pump-1")
    with pytest.raises(Conflict):
        create_device(db, "acme", "pump-1")


def test_same_name_in_two_projects(db: Database) -> None:
    first = create_device(db, "acme", "pump-1")
    second = create_device(db, "other", "pump-1")
    assert first.id != second.id


def test_create_duplicate_certificate_id_is_conflict(db: Database) -> None:
    create_device(db, "acme", "a", certificate_id="serial-1")
    with pytest.raises(Conflict):
        create_device(db, "acme", "b", certificate_id="serial-1")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="fail/empty"),
        pytest.param(" pump", id="fail/leading-space"),
        pytest.param("pump\n", id="fail/newline"),
        pytest.param("pu\x00mp", id="fail/control"),
        pytest.param("p" * 201, id="fail/too-long"),
    ],
)
def test_create_rejects_invalid_name(db: Database, name: str) -> None:
    with pytest.raises(InvalidInput):
        create_device(db, "acme", name)


def test_create_rejects_invalid_certificate_id(db: Database) -> None:
    with pytest.raises(InvalidInput):
        create_device(db, "acme", "pump", certificate_id="has space")


def test_get_from_other_project_is_not_found(db: Database) -> None:
    device = create_device(db, "acme", "pump-1")
    with pytest.raises(NotFound):
        get_device(db, "other", device.id)


def test_get_unknown_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        get_device(db, "acme", "0" * 24)


def test_list_orders_by_name_and_pages(db: Database) -> None:
    for index in (3, 1, 4, 0, 2):
        create_device(db, "acme", f"dev-{index}")
    create_device(db, "other", "dev-9")

    first = list_devices(db, "acme", page=0, per_page=2)
    last = list_devices(db, "acme", page=2, per_page=2)

    assert [device.name for device in first.items] == ["dev-0", "dev-1"]
    assert first.total == 5
    assert [device.name for device in last.items] == ["dev-4"]
    assert last.total == 5


def test_list_filters_by_name_ignoring_case(db: Database) -> None:
    create_device(db, "acme", "Pump-North")
    create_device(db, "acme", "pump-south")
    create_device(db, "acme", "valve")
    create_device(db, "acme", "100%_sure")

    pumps = list_devices(db, "acme", name="PUMP")
    literal = list_devices(db, "acme", name="%_")

    assert [device.name for device in pumps.items] == ["Pump-North", "pump-south"]
    assert pumps.total == 2
    assert [device.name for device in literal.items] == ["100%_sure"]


def test_list_unknown_project_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        list_devices(db, "nobody")


@pytest.mark.parametrize(
    ("page", "per_page"),
    [
        pytest.param(-1, 10, id="fail/negative-page"),
        pytest.param(MAX_PAGE + 1, 10, id="fail/page-beyond-max"),
        pytest.param(2**63, 1000, id="fail/page-beyond-sql-integer"),
        pytest.param(0, 0, id="fail/empty-page"),
        pytest.param(0, 1001, id="fail/huge-page"),
    ],
)
def test_list_rejects_invalid_paging(db: Database, page: int, per_page: int) -> None:
    with pytest.raises(InvalidInput):
        list_devices(db, "acme", page=page, per_page=per_page)


def test_update_changes_given_fields_only(db: Database) -> None:
    device = create_device(db, "acme", "pump-1", tags=["a"])
    updated = update_device(db, "acme", device.id, name="pump-2", metadata={"floor": 3})
    assert updated.name == "pump-2"
    assert updated.metadata == {"floor": 3}
    assert updated.tags == ("a",)
    assert get_device(db, "acme", device.id) == updated


def test_update_to_taken_name_is_conflict(db: Database) -> None:
    create_device(db, "acme", "pump-1")
    device = create_device(db, "acme", "pump-2")
    with pytest.raises(Conflict):
        update_device(db, "acme", device.id, name="pump-1")
    assert get_device(db, "acme", device.id).name == "pump-2"


def test_update_in_other_project_is_not_found(db: Database) -> None:
    device = create_device(db, "acme", "pump-1")
    with pytest.raises(NotFound):
        update_device(db, "other", device.id, name="x")


def test_set_certificate_id_once(db: Database) -> None:
    device = create_device(db, "acme", "pump-1")
    updated = set_certificate_id(db, "acme", device.id, "serial-1")
    again = set_certificate_id(db, "acme", device.id, "serial-1")
    assert updated.certificate_id == "serial-1"
    assert again.certificate_id == "serial-1"


def test_certificate_id_is_immutable(db: Database) -> None:
    device = create_device(db, "acme", "pump-1", certificate_id="serial-1")
    with pytest.raises(Conflict, match="never changes"):
        set_certificate_id(db, "acme", device.id, "serial-2")
    assert get_device(db, "acme", device.id).certificate_id == "serial-1"


def test_certificate_id_of_another_device_is_conflict(db: Database) -> None:
    create_device(db, "acme", "a", certificate_id="serial-1")
    device = create_device(db, "acme", "b")
    with pytest.raises(Conflict):
        set_certificate_id(db, "acme", device.id, "serial-1")
    assert get_device(db, "acme", device.id).certificate_id is None


def test_set_enabled(db: Database) -> None:
    device = create_device(db, "acme", "pump-1")
    assert set_device_enabled(db, "acme", device.id, False).enabled is False
    assert get_device(db, "acme", device.id).enabled is False
    assert set_device_enabled(db, "acme", device.id, True).enabled is True


def test_delete(db: Database) -> None:
    device = create_device(db, "acme", "pump-1")
    delete_device(db, "acme", device.id)
    with pytest.raises(NotFound):
        get_device(db, "acme", device.id)


def test_delete_from_other_project_is_not_found(db: Database) -> None:
    device = create_device(db, "acme", "pump-1")
    with pytest.raises(NotFound):
        delete_device(db, "other", device.id)
    assert get_device(db, "acme", device.id).id == device.id


def test_list_filters_by_exact_name(db: Database) -> None:
    create_device(db, "acme", "pump-1")
    create_device(db, "acme", "pump-10")
    page = list_devices(db, "acme", exact_name="pump-1")
    assert [device.name for device in page.items] == ["pump-1"]
    assert page.total == 1


def test_certificate_id_change_has_its_own_reason(db: Database) -> None:
    device = create_device(db, "acme", "a", certificate_id="serial-1")
    with pytest.raises(Conflict) as caught:
        set_certificate_id(db, "acme", device.id, "serial-2")
    assert caught.value.reason is Reason.CERTIFICATE_ID_IMMUTABLE


def test_update_adds_and_removes_labels(db: Database) -> None:
    device = create_device(db, "acme", "a", hardware_ids=["h1", "h2"], tags=["t1"])
    updated = update_device(
        db,
        "acme",
        device.id,
        add_hardware_ids=["h3", "h1"],
        remove_hardware_ids=["h2"],
        add_tags=["t2"],
        remove_tags=["t1", "absent"],
    )
    assert updated.hardware_ids == ("h1", "h3")
    assert updated.tags == ("t2",)


def test_labels_drop_repeats(db: Database) -> None:
    device = create_device(db, "acme", "a", tags=["t", "t", "u"])
    assert device.tags == ("t", "u")


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param([""], id="fail/empty"),
        pytest.param([" t"], id="fail/white-space"),
        pytest.param(["x" * 201], id="fail/too-long"),
        pytest.param([f"t{index}" for index in range(101)], id="fail/too-many"),
        pytest.param("tag", id="fail/string-not-list"),
    ],
)
def test_invalid_tags_are_rejected(db: Database, tags: list[str]) -> None:
    with pytest.raises(InvalidInput):
        create_device(db, "acme", "a", tags=tags)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"x": float("nan")}, id="fail/nan"),
        pytest.param({"x": "y" * 20_000}, id="fail/too-large"),
        pytest.param(["not", "an", "object"], id="fail/not-object"),
    ],
)
def test_invalid_metadata_is_rejected(db: Database, metadata: object) -> None:
    device = create_device(db, "acme", "a")
    with pytest.raises(InvalidInput):
        update_device(db, "acme", device.id, metadata=metadata)  # type: ignore[arg-type]


def test_find_device_by_id_or_name(db: Database) -> None:
    created = create_device(db, "acme", "pump-1")

    assert find_device(db, "acme", created.id) == created
    assert find_device(db, "acme", "pump-1") == created


def test_find_device_prefers_id(db: Database) -> None:
    first = create_device(db, "acme", "pump-1")
    named_like_first = create_device(db, "acme", first.id)

    assert find_device(db, "acme", first.id) == first
    assert named_like_first.name == first.id


def test_find_device_missing_is_not_found(db: Database) -> None:
    create_device(db, "other", "pump-1")

    with pytest.raises(NotFound, match="no device has this ID or name"):
        find_device(db, "acme", "pump-1")


def test_device_enabled_follows_the_enabled_flag(db: Database) -> None:
    device = create_device(db, "acme", "pump-1")
    assert device_enabled(db, "acme", device.id) is True
    set_device_enabled(db, "acme", device.id, False)
    assert device_enabled(db, "acme", device.id) is False


def test_device_enabled_missing_or_foreign_is_none(db: Database) -> None:
    device = create_device(db, "acme", "pump-1")
    assert device_enabled(db, "other", device.id) is None
    delete_device(db, "acme", device.id)
    assert device_enabled(db, "acme", device.id) is None
