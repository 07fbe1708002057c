"""Transactions on a bare DB-API connection, for batches of device writes.

The gateway applies the writes that devices send (LightDB State, stream
records, log entries) in batches: one transaction per batch, and one
savepoint per write inside it, so that a write that fails is rolled
back alone (see :mod:`fleetgate.gateway.writes`). Statements run on the
pooled DB-API connection as :class:`PreparedStatement` objects, because
the ORM session and SQLAlchemy's per-call statement execution cost
several times the SQL of such a small write.

Locking is the store's usual one. A SQLite batch starts with
``BEGIN IMMEDIATE``. A PostgreSQL batch locks the device row of every
write with ``SELECT ... FOR UPDATE`` before the first write, in the
order of the device IDs, so two batches, or a batch and a management
API write that locks one device, never wait for each other in a cycle.

Driver errors are translated as :meth:`Database.session` translates
them: StoreUnavailable when the database is down or busy.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select

from fleetgate.errors import NotFound, StoreUnavailable
from fleetgate.store.database import (
    Database,
    PreparedStatement,
    translate_unavailable,
    wrap_driver_error,
)
from fleetgate.store.models import Base, Device

logger = logging.getLogger(__name__)

_SAVEPOINT = "fleetgate_write"


def prepared_insert(model: type[Base], columns: Iterable[str]) -> PreparedStatement:
    """Prepare an INSERT into ``model``'s table that returns the new row's ``id``.

    Each column is bound by its own name. Column defaults do not apply,
    because DB-API runs the SQL as written, so pass every value.
    """
    table = Base.metadata.tables[model.__tablename__]
    values = {name: bindparam(name, type_=table.c[name].type) for name in columns}
    return PreparedStatement(insert(table).values(values).returning(table.c.id))


class StatementRunner:
    """Runs prepared statements in an open transaction.

    Store code that serves both the management API and the device write
    path is written against this interface. :class:`SessionRunner` runs
    on a session's connection, :class:`BatchTransaction` on DB-API.
    """

    def fetch_one(
        self, statement: PreparedStatement, params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        """Run ``statement`` and return its first row."""
        raise NotImplementedError

    def execute(self, statement: PreparedStatement, params: Mapping[str, Any]) -> None:
        """Run ``statement`` and drop any rows it returns."""
        raise NotImplementedError

    def lock_device(self, device_id: str, project_id: str | None = None) -> None:
        """Lock a device row until the transaction ends, or raise NotFound."""
        params = {"device_id": device_id}
        statement = _LOCK_DEVICE
        if project_id is not None:
            params["project_id"] = project_id
            statement = _LOCK_DEVICE_IN_PROJECT
        if self.fetch_one(statement, params) is None:
            scope = "" if project_id is None else f" in project {project_id!r}"
            raise NotFound(f"cannot find device {device_id!r}{scope}")


class SessionRunner(StatementRunner):
    """Runs prepared statements on the connection of an ORM session."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def fetch_one(
        self, statement: PreparedStatement, params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        """Run ``statement`` and return its first row."""
        row = self._connection.execute(statement.statement, params).first()
        return None if row is None else tuple(row)

    def execute(self, statement: PreparedStatement, params: Mapping[str, Any]) -> None:
        """Run ``statement`` and drop any rows it returns."""
        self._connection.execute(statement.statement, params)


class BatchTransaction(StatementRunner):
    """One transaction on a DB-API connection, with a savepoint per write.

    Callbacks registered with :meth:`after_commit` during a write run
    after the commit, unless the write was rolled back to its savepoint.
    """

    def __init__(self, db: Database, connection: Any) -> None:
        self._db = db
        self._dialect = db.engine.dialect
        self._dbapi_error = self._dialect.loaded_dbapi.Error
        self._connection = connection
        self._cursor = connection.cursor()
        self._locked: set[str] = set()
        self._committed_callbacks: list[Callable[[], None]] = []
        self._write_callbacks: list[Callable[[], None]] = []

    def fetch_one(
        self, statement: PreparedStatement, params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        """Run ``statement`` and return its first row."""
        compiled = statement.compiled(self._dialect)
        self._run(compiled.sql, compiled.bind(params))
        row = self._guarded(self._cursor.fetchone)
        return None if row is None else compiled.convert(row)

    def execute(self, statement: PreparedStatement, params: Mapping[str, Any]) -> None:
        """Run ``statement`` and drop any rows it returns."""
        compiled = statement.compiled(self._dialect)
        self._run(compiled.sql, compiled.bind(params))

    def execute_many(
        self, statement: PreparedStatement, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Run ``statement`` once for each of ``rows``, in one driver call."""
        compiled = statement.compiled(self._dialect)
        self._guarded(
            self._cursor.executemany,
            compiled.sql,
            [compiled.bind(row) for row in rows],
        )

    def lock_devices(self, device_ids: Iterable[str]) -> None:
        """Lock the rows of the devices that exist, in the order of their IDs."""
        for device_id in sorted(set(device_ids)):
            if self.fetch_one(_LOCK_DEVICE, {"device_id": device_id}) is not None:
                self._locked.add(device_id)

    def lock_device(self, device_id: str, project_id: str | None = None) -> None:
        """Lock a device row until the commit, or raise NotFound."""
        # A row that lock_devices found stays locked and cannot have been
        # deleted since, so only a scoped or unseen device costs a query.
        if project_id is None and device_id in self._locked:
            return
        super().lock_device(device_id, project_id)
        self._locked.add(device_id)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the current write is committed."""
        self._write_callbacks.append(callback)

    def begin_write(self) -> None:
        """Open the savepoint of the next write."""
        self._write_callbacks = []
        self._run(f"SAVEPOINT {_SAVEPOINT}")

    def end_write(self) -> None:
        """Keep the current write: release its savepoint."""
        self._run(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        self._committed_callbacks.extend(self._write_callbacks)
        self._write_callbacks = []

    def undo_write(self) -> None:
        """Roll the current write back to its savepoint, keeping the others."""
        self._write_callbacks = []
        self._run(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        self._run(f"RELEASE SAVEPOINT {_SAVEPOINT}")

    def _begin(self) -> None:
        if self._dialect.name == "sqlite":
            # The engine's connect hook turned off pysqlite's own BEGIN.
            self._run("BEGIN IMMEDIATE")

    def _commit(self) -> list[Callable[[], None]]:
        self._guarded(self._connection.commit)
        return self._committed_callbacks

    def _rollback(self) -> None:
        with contextlib.suppress(self._dbapi_error):
            self._connection.rollback()

    def _close(self) -> None:
        with contextlib.suppress(self._dbapi_error):
            self._cursor.close()

    def _run(self, sql: str, params: Any = ()) -> None:
        self._guarded(self._cursor.execute, sql, params)

    def _guarded(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except self._dbapi_error as exc:
            with translate_unavailable("write to the database", self._db.engine):
                raise wrap_driver_error(exc, self._dbapi_error) from exc


@contextlib.contextmanager
def batch_transaction(db: Database) -> Iterator[BatchTransaction]:
    """Run one batch transaction: commit when the block ends, roll back on error.

    The after-commit callbacks of the kept writes run after the commit,
    in the calling thread. StoreUnavailable is reported to the
    database's outage monitor.
    """
    dbapi_error = db.engine.dialect.loaded_dbapi.Error
    try:
        try:
            connection = db.engine.raw_connection()
        except dbapi_error as exc:
            with translate_unavailable("access the database", db.engine):
                raise wrap_driver_error(exc, dbapi_error) from exc
        try:
            transaction = BatchTransaction(db, connection)
            try:
                transaction._begin()
                yield transaction
                callbacks = transaction._commit()
            except BaseException:
                transaction._rollback()
                raise
            finally:
                transaction._close()
        finally:
            connection.close()
    except StoreUnavailable as exc:
        db.outage.failed(exc.message)
        raise
    db.outage.succeeded()
    for callback in callbacks:
        try:
            callback()
        except Exception:
            # The writes are committed; a failed notification must not
            # make them look failed.
            logger.exception("after-commit callback failed")


_LOCK_DEVICE = PreparedStatement(
    select(Device.id).where(Device.id == bindparam("device_id")).with_for_update()
)
_LOCK_DEVICE_IN_PROJECT = PreparedStatement(
    select(Device.id)
    .where(Device.id == bindparam("device_id"))
    .where(Device.project_id == bindparam("project_id"))
    .with_for_update()
)
