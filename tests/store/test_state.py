"""LightDB State: nested get, set and delete on one JSON document."""

from __future__ import annotations

import threading

import pytest

from fleetgate.errors import InvalidInput, NotFound
from fleetgate.store.database import Database
from fleetgate.store.devices import create_device, delete_device
from fleetgate.store.models import DeviceState
from fleetgate.store.projects import create_project
from fleetgate.store.state import delete_state, get_state, set_state


@pytest.fixture
def device_id(database: Database) -> str:
    create_project(database, "acme")
    return create_device(database, "acme", "pump-1").id


def test_new_device_has_empty_document(database: Database, device_id: str) -> None:
    assert get_state(database, device_id, ()) == {}


def test_set_creates_intermediate_objects(database: Database, device_id: str) -> None:
    revision = set_state(database, device_id, ("a", "b", "c"), 21.5)
    assert revision == 1
    assert get_state(database, device_id, ("a", "b", "c")) == 21.5
    assert get_state(database, device_id, ("a",)) == {"b": {"c": 21.5}}


def test_set_replaces_non_object_on_the_way(database: Database, device_id: str) -> None:
    set_state(database, device_id, ("a",), [1, 2])
    set_state(database, device_id, ("a", "b"), True)
    assert get_state(database, device_id, ()) == {"a": {"b": True}}


def test_set_keeps_siblings(database: Database, device_id: str) -> None:
    set_state(database, device_id, ("a", "x"), 1)
    set_state(database, device_id, ("a", "y"), {"z": None})
    assert get_state(database, device_id, ("a",)) == {"x": 1, "y": {"z": None}}


def test_set_root_replaces_document(database: Database, device_id: str) -> None:
    set_state(database, device_id, ("old",), 1)
    set_state(database, device_id, (), {"new": "yes"})
    assert get_state(database, device_id, ()) == {"new": "yes"}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param((), [1], id="fail/root-not-object"),
        pytest.param(("a",), float("nan"), id="fail/nan"),
        pytest.param(("a",), {"b": b"bytes"}, id="fail/bytes"),
        pytest.param(("a", ""), 1, id="fail/empty-step"),
    ],
)
def test_set_rejects_invalid_input(
    database: Database, device_id: str, path: tuple[str, ...], value: object
) -> None:
    with pytest.raises(InvalidInput):
        set_state(database, device_id, path, value)
    assert get_state(database, device_id, ()) == {}


def test_revision_counts_changes(database: Database, device_id: str) -> None:
    assert set_state(database, device_id, ("a",), 1) == 1
    assert set_state(database, device_id, ("b",), 2) == 2
    assert delete_state(database, device_id, ("a",)) == 3


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(("missing",), id="fail/missing-key"),
        pytest.param(("a", "b", "c"), id="fail/below-a-value"),
        pytest.param(("a", "b", "missing"), id="fail/missing-nested"),
    ],
)
def test_get_missing_is_not_found(
    database: Database, device_id: str, path: tuple[str, ...]
) -> None:
    set_state(database, device_id, ("a", "b"), 5)
    with pytest.raises(NotFound):
        get_state(database, device_id, path)


def test_get_returns_a_copy(database: Database, device_id: str) -> None:
    set_state(database, device_id, ("a",), {"b": 1})
    value = get_state(database, device_id, ("a",))
    value["b"] = 2
    assert get_state(database, device_id, ("a", "b")) == 1


def test_delete_nested_keeps_parent(database: Database, device_id: str) -> None:
    set_state(database, device_id, ("a", "b"), 1)
    set_state(database, device_id, ("a", "c"), 2)
    delete_state(database, device_id, ("a", "b"))
    assert get_state(database, device_id, ()) == {"a": {"c": 2}}


def test_delete_missing_is_not_found(database: Database, device_id: str) -> None:
    set_state(database, device_id, ("a",), 1)
    with pytest.raises(NotFound):
        delete_state(database, device_id, ("a", "b"))
    with pytest.raises(NotFound):
        delete_state(database, device_id, ("b",))


def test_delete_missing_ok_keeps_revision(database: Database, device_id: str) -> None:
    set_state(database, device_id, ("a",), 1)
    assert delete_state(database, device_id, ("b",), missing_ok=True) == 1


def test_delete_root_empties_document(database: Database, device_id: str) -> None:
    set_state(database, device_id, ("a",), 1)
    delete_state(database, device_id, ())
    assert get_state(database, device_id, ()) == {}


def test_unknown_device_is_not_found(database: Database, device_id: str) -> None:
    with pytest.raises(NotFound):
        get_state(database, "0" * 24, ())
    with pytest.raises(NotFound):
        set_state(database, "0" * 24, ("a",), 1)
    with pytest.raises(NotFound):
        delete_state(database, "0" * 24, ("a",))


def test_other_project_is_not_found(database: Database, device_id: str) -> None:
    create_project(database, "other")
    set_state(database, device_id, ("a",), 1)
    with pytest.raises(NotFound):
        get_state(database, device_id, ("a",), project_id="other")
    with pytest.raises(NotFound):
        set_state(database, device_id, ("a",), 2, project_id="other")
    with pytest.raises(NotFound):
        delete_state(database, device_id, ("a",), project_id="other")
    assert get_state(database, device_id, ("a",), project_id="acme") == 1


def test_deleting_device_drops_state(database: Database, device_id: str) -> None:
    set_state(database, device_id, ("a",), 1)
    delete_device(database, "acme", device_id)
    with pytest.raises(NotFound):
        get_state(database, device_id, ())


def test_state_persists_across_engines(database_url: str) -> None:
    first = Database.open(database_url)
    try:
        create_project(first, "acme")
        device_id = create_device(first, "acme", "pump-1").id
        set_state(first, device_id, ("sensor", "temp"), 20)
    finally:
        first.dispose()

    second = Database.open(database_url)
    try:
        assert get_state(second, device_id, ("sensor", "temp")) == 20
    finally:
        second.dispose()


def test_concurrent_writes_are_all_kept(database: Database, device_id: str) -> None:
    writers = 20
    barrier = threading.Barrier(writers, timeout=30)
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            barrier.wait()
            set_state(database, device_id, ("keys", f"k{index}"), index)
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert get_state(database, device_id, ("keys",)) == {
        f"k{index}": index for index in range(writers)
    }
    assert set_state(database, device_id, ("last",), 0) == writers + 1


def test_slash_in_key_is_one_step(database: Database, device_id: str) -> None:
    set_state(database, device_id, ("a/b",), 1)
    assert get_state(database, device_id, ("a/b",)) == 1
    with pytest.raises(NotFound):
        get_state(database, device_id, ("a",))


def _nested_arrays(levels: int) -> object:
    value: object = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(("a",) * 31, [], id="ok/path-and-array-at-limit"),
        pytest.param(("a",) * 32, 1, id="ok/path-at-limit"),
        pytest.param((), {"a": _nested_arrays(31)}, id="ok/document-at-limit"),
        pytest.param(("k" * 510,), 1, id="ok/path-length-at-limit"),
    ],
)
def test_set_accepts_limits(
    database: Database, device_id: str, path: tuple[str, ...], value: object
) -> None:
    set_state(database, device_id, path, value)
    assert get_state(database, device_id, path) == value


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        pytest.param(("a",) * 32, [], "more than 32 levels", id="fail/array-over"),
        pytest.param(("a",) * 33, 1, "more than 32 levels", id="fail/path-over"),
        pytest.param(
            (), {"a": _nested_arrays(32)}, "more than 32 levels", id="fail/document"
        ),
        pytest.param(
            tuple(f"k{i}" for i in range(48)),
            _nested_arrays(450),
            "more than 32 levels",
            id="fail/deep-arrays-under-long-path",
        ),
        pytest.param(("k" * 512,), 1, "maximum is 512", id="fail/path-length"),
    ],
)
def test_set_rejects_beyond_limits(
    database: Database,
    device_id: str,
    path: tuple[str, ...],
    value: object,
    message: str,
) -> None:
    with pytest.raises(InvalidInput, match=message):
        set_state(database, device_id, path, value)
    assert get_state(database, device_id, ()) == {}


def test_deep_document_stays_readable(database: Database, device_id: str) -> None:
    # Stored directly, as a write from before the depth limit could have.
    with database.session() as session:
        session.add(
            DeviceState(
                device_id=device_id,
                document={"deep": _nested_arrays(600)},
                revision=1,
            )
        )

    assert get_state(database, device_id, ("deep",)) == _nested_arrays(600)
    assert set_state(database, device_id, ("other",), 1) == 2
    assert delete_state(database, device_id, ("deep",)) == 3
    assert get_state(database, device_id, ()) == {"other": 1}


@pytest.mark.parametrize(
    ("value", "named"),
    [
        pytest.param(None, "not null", id="fail/null"),
        pytest.param([1], "not an array", id="fail/array"),
        pytest.param(21.5, "not a number", id="fail/number"),
        pytest.param("on", "not a string", id="fail/string"),
        pytest.param(True, "not a boolean", id="fail/boolean"),
    ],
)
def test_root_error_names_json_type(
    database: Database, device_id: str, value: object, named: str
) -> None:
    with pytest.raises(InvalidInput, match=f"must be a JSON object, {named}$"):
        set_state(database, device_id, (), value)
