"""LightDB State: one JSON document per device, addressed by path.

A path is a tuple of object keys, such as ``("sensor", "temp")`` for
``.d/sensor/temp``. The empty path is the whole document, which is always
an object and starts empty. Arrays are values, never path steps, so
``("list", "0")`` reads key ``"0"`` of an object.

Each change reads the whole document, edits it and writes it back in one
transaction that first locks the device row (``SELECT ... FOR UPDATE``
on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so concurrent writers to
one device are applied one after another and none is lost. Every change
increments the document's ``revision`` and, once committed, is published
to :data:`fleetgate.store.changes.state_changes` in this process. The
gateway's device writes go through :func:`set_state_in` and
:func:`delete_state_in`, one savepoint each in a batch transaction of
:mod:`fleetgate.store.batch`, with the same locks and limits.

Limits: a write may nest at most ``MAX_DEPTH`` (32) levels, counting
each path step and each object or array of the value, so ``{"a": [1]}``
at ``("x",)`` takes three levels. Its path may have at most
``MAX_PATH_LENGTH`` (512) characters, slashes included. A write over
either limit raises InvalidInput (CoAP 4.00, HTTP 400) and stores
nothing. Reads return the freshly decoded document without a copy, and
deletions copy it without recursion, so a deeper document stored before
these limits existed stays readable.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from fleetgate.errors import InvalidInput, NotFound
from fleetgate.store import audit
from fleetgate.store.batch import BatchTransaction, SessionRunner, StatementRunner
from fleetgate.store.changes import state_changes
from fleetgate.store.database import Database, PreparedRead, PreparedStatement
from fleetgate.store.models import Device, DeviceState, utcnow

StatePath = tuple[str, ...]

MAX_DEPTH = 32
MAX_PATH_LENGTH = 512


def get_state(
    db: Database,
    device_id: str,
    path: StatePath = (),
    *,
    project_id: str | None = None,
) -> Any:
    """Return the value at ``path``, or raise NotFound when nothing is there.

    With ``project_id`` a device of another project is NotFound too.
    """
    steps = _validate_path(path)
    # Plain DB-API: this read serves every GET on .d and every Observe
    # notification, where the ORM session costs several times the query.
    if project_id is None:
        row = _STATE_QUERY.fetch_one(db, device_id=device_id)
    else:
        row = _STATE_QUERY_IN_PROJECT.fetch_one(
            db, device_id=device_id, project_id=project_id
        )
    if row is None:
        raise NotFound(f"cannot find device {device_id!r}{_scope(project_id)}")
    # A device without a state row has the empty document.
    node: Any = {} if row[0] is None else row[0]
    for depth, key in enumerate(steps):
        if not isinstance(node, dict) or key not in node:
            raise NotFound(
                f"cannot find state {_render(steps[: depth + 1])} "
                f"of device {device_id!r}"
            )
        node = node[key]
    # The document was decoded from the row for this call alone, so the
    # caller may keep or change it without a copy.
    return node


# One query instead of two loads: the row tells both whether the device
# exists and, through the outer join, its document.
_STATE_SELECT = (
    select(DeviceState.document)
    .select_from(Device)
    .outerjoin(DeviceState, DeviceState.device_id == Device.id)
    .where(Device.id == bindparam("device_id"))
)
_STATE_QUERY = PreparedRead(_STATE_SELECT)
_STATE_QUERY_IN_PROJECT = PreparedRead(
    _STATE_SELECT.where(Device.project_id == bindparam("project_id"))
)


def set_state(
    db: Database,
    device_id: str,
    path: StatePath,
    value: Any,
    *,
    project_id: str | None = None,
    actor: str | None = None,
) -> int:
    """Store ``value`` at ``path`` and return the new revision.

    Missing objects on the way are created, and a non-object on the way
    is replaced by an object. The empty path replaces the whole document,
    which must then be an object. Raises InvalidInput when the path or
    the value breaks the limits in the module docstring. With ``actor``
    the change is audited by path, without the value.
    """
    steps = _validate_write(device_id, path, value)
    with db.session() as session:
        revision = _set(
            SessionRunner(session.connection()), device_id, project_id, steps, value
        )
        if actor is not None:
            _audit(session, actor, "state.set", device_id, project_id, steps)
    state_changes.publish(device_id, steps)
    return revision


def set_state_in(
    transaction: BatchTransaction, device_id: str, path: StatePath, value: Any
) -> int:
    """Store ``value`` at ``path`` in a batch and return the new revision.

    The rules and errors of :func:`set_state` apply. The change is
    published once the batch commits.
    """
    steps = _validate_write(device_id, path, value)
    revision = _set(transaction, device_id, None, steps, value)
    transaction.after_commit(lambda: state_changes.publish(device_id, steps))
    return revision


def delete_state(
    db: Database,
    device_id: str,
    path: StatePath,
    *,
    project_id: str | None = None,
    missing_ok: bool = False,
    actor: str | None = None,
) -> int:
    """Remove the value at ``path`` and return the document's revision.

    Raises NotFound when nothing is there, unless ``missing_ok``, in
    which case the document and its revision stay as they are. The empty
    path empties the whole document. With ``actor`` a removal is audited.
    """
    steps = _validate_path(path)
    with db.session() as session:
        runner = SessionRunner(session.connection())
        revision, changed = _delete(
            runner, device_id, project_id, steps, missing_ok=missing_ok
        )
        if not changed:
            return revision
        if actor is not None:
            _audit(session, actor, "state.delete", device_id, project_id, steps)
    state_changes.publish(device_id, steps)
    return revision


def delete_state_in(
    transaction: BatchTransaction,
    device_id: str,
    path: StatePath,
    *,
    missing_ok: bool = False,
) -> int:
    """Remove the value at ``path`` in a batch and return the revision.

    The rules and errors of :func:`delete_state` apply. A removal is
    published once the batch commits.
    """
    steps = _validate_path(path)
    revision, changed = _delete(
        transaction, device_id, None, steps, missing_ok=missing_ok
    )
    if changed:
        transaction.after_commit(lambda: state_changes.publish(device_id, steps))
    return revision


def _validate_write(device_id: str, path: StatePath, value: Any) -> StatePath:
    steps = _validate_path(path)
    _check_limits(steps, value)
    _validate_value(value, steps)
    if not steps and not isinstance(value, dict):
        raise InvalidInput(
            f"cannot set the state of device {device_id!r}: the whole "
            f"document must be a JSON object, not {_describe_json_type(value)}"
        )
    return steps


def _set(
    runner: StatementRunner,
    device_id: str,
    project_id: str | None,
    steps: StatePath,
    value: Any,
) -> int:
    state = _lock_state(runner, device_id, project_id)
    if not steps:
        document: dict[str, Any] = _copy_json(value)
    else:
        document = _copy_json(state.document)
        parent = document
        for key in steps[:-1]:
            child = parent.get(key)
            if not isinstance(child, dict):
                child = {}
                parent[key] = child
            parent = child
        parent[steps[-1]] = _copy_json(value)
    return _write(runner, state, document)


def _delete(
    runner: StatementRunner,
    device_id: str,
    project_id: str | None,
    steps: StatePath,
    *,
    missing_ok: bool,
) -> tuple[int, bool]:
    """Remove the value at ``steps``; return the revision and whether it changed."""
    state = _lock_state(runner, device_id, project_id)
    document: dict[str, Any] = _copy_json(state.document)
    if steps:
        parent: Any = document
        for key in steps[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or steps[-1] not in parent:
            if missing_ok:
                return state.revision, False
            raise NotFound(
                f"cannot delete state {_render(steps)} of device "
                f"{device_id!r}: nothing is stored there"
            )
        del parent[steps[-1]]
    else:
        document = {}
    return _write(runner, state, document), True


@dataclasses.dataclass
class _LockedState:
    """A device's document and revision, read after locking the device row."""

    device_id: str
    document: Any
    revision: int
    exists: bool


def _lock_state(
    runner: StatementRunner, device_id: str, project_id: str | None
) -> _LockedState:
    # Lock the device row rather than the state row, because the state
    # row may not exist yet and two first writers would both insert it.
    # Core statements, not the ORM: a write on .d runs here, and the
    # ORM's identity map and flush cost more than the SQL.
    runner.lock_device(device_id, project_id)
    row = runner.fetch_one(_READ_STATE_ROW, {"device_id": device_id})
    if row is None:
        return _LockedState(device_id, {}, 0, exists=False)
    document, revision = row
    document = {} if document is None else document
    return _LockedState(device_id, document, revision or 0, exists=True)


def _write(
    runner: StatementRunner, state: _LockedState, document: dict[str, Any]
) -> int:
    revision = state.revision + 1
    statement = _UPDATE_STATE if state.exists else _INSERT_STATE
    runner.execute(
        statement,
        {
            "state_device_id": state.device_id,
            "new_document": document,
            "new_revision": revision,
            "new_updated_at": utcnow(),
        },
    )
    return revision


_READ_STATE_ROW = PreparedStatement(
    select(DeviceState.document, DeviceState.revision).where(
        DeviceState.device_id == bindparam("device_id")
    )
)
_UPDATE_STATE = PreparedStatement(
    update(DeviceState)
    .where(DeviceState.device_id == bindparam("state_device_id"))
    .values(
        document=bindparam("new_document", type_=DeviceState.document.type),
        revision=bindparam("new_revision"),
        updated_at=bindparam("new_updated_at", type_=DeviceState.updated_at.type),
    )
)
_INSERT_STATE = PreparedStatement(
    insert(DeviceState).values(
        device_id=bindparam("state_device_id"),
        document=bindparam("new_document", type_=DeviceState.document.type),
        revision=bindparam("new_revision"),
        updated_at=bindparam("new_updated_at", type_=DeviceState.updated_at.type),
    )
)


def _audit(
    session: Session,
    actor: str,
    action: str,
    device_id: str,
    project_id: str | None,
    steps: StatePath,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        project_id=project_id,
        target_type="device",
        target_id=device_id,
        details={"path": _render(steps)},
    )


def _scope(project_id: str | None) -> str:
    return "" if project_id is None else f" in project {project_id!r}"


def _validate_path(path: Sequence[str]) -> StatePath:
    steps = tuple(path)
    for key in steps:
        if not isinstance(key, str) or not key:
            raise InvalidInput(
                f"cannot use state path {_render(steps)}: every step must be "
                "a non-empty string"
            )
    return steps


def _check_limits(steps: StatePath, value: Any) -> None:
    rendered = _render(steps)
    if len(rendered) > MAX_PATH_LENGTH:
        raise InvalidInput(
            f"cannot store state at {rendered[:40]}...: the path has "
            f"{len(rendered)} characters and the maximum is {MAX_PATH_LENGTH}, "
            "so use shorter keys"
        )
    # Checked before json.dumps and the copies, which recurse per level.
    value_depth = _nesting_depth(value, limit=MAX_DEPTH - len(steps))
    if len(steps) + value_depth > MAX_DEPTH:
        raise InvalidInput(
            f"cannot store state at {rendered}: the document would nest more "
            f"than {MAX_DEPTH} levels deep (each path step and each object or "
            "array in the value counts one), so store a flatter value or use "
            "a shorter path"
        )


def _nesting_depth(value: Any, *, limit: int) -> int:
    """Return the levels of objects and arrays in ``value``, 0 for a scalar.

    Stops one level past ``limit``, so a huge value costs no more than that.
    """
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _copy_json(value: Any) -> Any:
    """Copy nested objects and arrays with a loop rather than recursion.

    ``copy.deepcopy`` takes two stack frames per level, so under Python's
    default recursion limit of 1000 it fails some 490 levels down.
    """
    root = _empty_like(value)
    if root is None:
        return value
    pending: list[tuple[Any, Any]] = [(value, root)]
    while pending:
        source, target = pending.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            copied = _empty_like(item)
            if copied is None:
                copied = item
            else:
                pending.append((item, copied))
            if isinstance(target, dict):
                target[key] = copied
            else:
                target.append(copied)
    return root


def _empty_like(value: Any) -> dict[str, Any] | list[Any] | None:
    if isinstance(value, dict):
        return {}
    if isinstance(value, list | tuple):
        return []
    return None


def _validate_value(value: Any, steps: StatePath) -> None:
    # JSON has no NaN or infinity, and PostgreSQL's json type rejects
    # them, so they are rejected on every backend alike.
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"cannot store state at {_render(steps)}: the value is not JSON ({exc})"
        ) from exc


def _describe_json_type(value: Any) -> str:
    # Device firmware authors read this, so it names JSON types, not Python's.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _render(steps: Sequence[object]) -> str:
    return "/" + "/".join(str(step) for step in steps)
