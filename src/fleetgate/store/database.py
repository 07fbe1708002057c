"""Engines, migrations and transactions for SQLite and PostgreSQL.

SQLite is the embedded default. It runs in WAL mode, so readers never
wait for the writer. Every transaction that may write starts with
``BEGIN IMMEDIATE``, which takes the write lock up front. Two writers
then queue for up to ``busy_timeout`` instead of one failing halfway
when it tries to upgrade a read lock. Writers are therefore serialized
per database file, which caps write throughput at what one writer
sustains.

PostgreSQL is for production and for several Fleetgate processes sharing
one database. Transactions run at READ COMMITTED; code that reads then
writes a row locks it first with ``SELECT ... FOR UPDATE``.

Driver errors that mean "the database cannot be reached or is busy" are
translated here, once, into :class:`fleetgate.errors.StoreUnavailable`,
and reported to the database's :class:`OutageMonitor`, which logs when
an outage starts and ends. The pool pings each connection on checkout,
so the first transaction after the server is back succeeds.
Integrity errors pass through, because only the caller knows which unique
value was taken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.base import Executable

from fleetgate.errors import InvalidInput, StoreUnavailable
from fleetgate.store.outage import OutageMonitor

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# How long a SQLite writer waits for the write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Connections each process keeps open to PostgreSQL, and how many more
# it may open under a burst. That is at most 30 per process, so three
# processes fit under PostgreSQL's default max_connections of 100.
POSTGRES_POOL_SIZE = 10
POSTGRES_MAX_OVERFLOW = 20

# Highest page number that a paged listing accepts. With at most 1000
# items a page, the SQL OFFSET stays far below the 64-bit limit of SQLite
# and PostgreSQL, which an unbounded page number could exceed.
MAX_PAGE = 1_000_000

# Key of the PostgreSQL advisory lock held while migrations run, so two
# processes that start at once do not both create the tables. Any fixed
# 64-bit number works, but it must not change between releases.
MIGRATION_LOCK_KEY = 0x666C_6565_7467_6174

# Execution option that marks an engine whose SQLite transactions only
# read, so they start with a plain deferred BEGIN.
_READ_ONLY = "fleetgate_read_only"

# Errors that may mean the database is down, unreachable, locked or out
# of connections. Anything else is a bug or a conflict and passes through.
_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)

# SQLite reports a missing table or a syntax error as OperationalError
# too. So on SQLite only these primary result codes mean "unavailable":
# BUSY 5, LOCKED 6, READONLY 8, IOERR 10, CORRUPT 11, FULL 13,
# CANTOPEN 14 and NOTADB 26.
_SQLITE_UNAVAILABLE_CODES = frozenset({5, 6, 8, 10, 11, 13, 14, 26})
# CORRUPT 11 and NOTADB 26: a damaged file, or one that is not a SQLite
# database. SQLite raises them as plain DatabaseError, which would pass
# through as a bug if it were not translated too.
_SQLITE_DAMAGED_CODES = frozenset({11, 26})
_TRANSLATED_ERRORS: tuple[type[Exception], ...] = (
    *_UNAVAILABLE_ERRORS,
    sa_exc.DatabaseError,
)
_SQLITE_BUSY = 5


def create_engine_for(url: str) -> Engine:
    """Create an engine for a SQLite or PostgreSQL URL, tuned for Fleetgate."""
    parsed = _normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _create_sqlite_engine(parsed)
    try:
        return create_engine(
            parsed,
            pool_size=POSTGRES_POOL_SIZE,
            max_overflow=POSTGRES_MAX_OVERFLOW,
            pool_timeout=30,
            # Connections dropped by a server restart or a firewall are
            # detected on checkout instead of failing the first query.
            pool_pre_ping=True,
            pool_recycle=1800,
            connect_args={"connect_timeout": 10},
        )
    except ImportError as exc:
        # SQLAlchemy imports the driver when it creates the engine.
        raise StoreUnavailable(
            f"cannot open database {parsed.render_as_string()!r}: the "
            f"PostgreSQL driver {exc.name or 'psycopg'} is not installed; "
            "install it with pip install 'fleetgate[postgres]'"
        ) from exc


def _normalize_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise InvalidInput(f"cannot open database {url!r}: invalid URL") from exc

    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        # Fleetgate ships psycopg 3. A bare postgresql:// URL would make
        # SQLAlchemy look for psycopg2, which is not installed.
        if parsed.get_driver_name() in ("", "psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    if backend == "sqlite":
        return parsed
    raise InvalidInput(
        f"cannot open database {parsed.render_as_string()!r}: "
        "only sqlite:// and postgresql:// URLs are supported"
    )


def _create_sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        _create_private_file(Path(url.database))
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Stop pysqlite from issuing its own BEGIN, so the "begin" hook
        # below decides how each transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        # In WAL mode NORMAL loses no committed data on a process crash,
        # only on power loss, and saves an fsync per commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        if connection.get_execution_options().get(_READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _create_private_file(path: Path) -> None:
    """Create the database file and its folder, readable by the owner only.

    The file contains device data and hashed API keys. SQLite gives the -wal
    and -shm files it creates the mode of the database file, so they are
    private too. An existing folder or file keeps its mode.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create database folder {str(path.parent)!r}: {exc.strerror}"
        ) from exc
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create database file {str(path)!r}: {exc.strerror}"
        ) from exc


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    # Switching a new file to WAL needs an exclusive lock. When other
    # connections use the file at that moment, SQLite can report
    # "database is locked" at once instead of waiting for busy_timeout
    # (seen when four engines migrate one new file), so retry here.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == _SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        else:
            return


def migrate(engine: Engine) -> None:
    """Apply every pending Alembic migration; a no-op when already at head."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))

    with (
        translate_unavailable("migrate the database", engine),
        engine.begin() as connection,
    ):
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends. PostgreSQL runs DDL inside
            # the transaction, so a second process waits here and then
            # finds the schema at head.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": MIGRATION_LOCK_KEY},
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextlib.contextmanager
def translate_unavailable(action: str, engine: Engine) -> Iterator[None]:
    """Raise StoreUnavailable for a driver error that means "down or busy"."""
    try:
        yield
    except _TRANSLATED_ERRORS as exc:
        if not _means_unavailable(exc):
            raise
        # The driver's own message, without the SQL and parameters that
        # SQLAlchemy appends, which could contain device data.
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        if _sqlite_code(exc) in _SQLITE_DAMAGED_CODES:
            raise StoreUnavailable(
                f"cannot {action}: {engine.url.database} is not a SQLite "
                f"database or is damaged ({detail}); restore it from a backup, "
                "or pass --data-dir with the folder that contains your "
                "fleetgate.db"
            ) from exc
        raise StoreUnavailable(f"cannot {action}: {detail}") from exc


def wrap_driver_error(
    exc: Exception, dbapi_error: type[Exception]
) -> sa_exc.StatementError:
    """Wrap a driver error as SQLAlchemy would, for :func:`translate_unavailable`."""
    return sa_exc.DBAPIError.instance(None, None, exc, dbapi_error)


def _means_unavailable(exc: Exception) -> bool:
    code = _sqlite_code(exc)
    if not isinstance(exc, _UNAVAILABLE_ERRORS):
        return code in _SQLITE_DAMAGED_CODES
    return code is None or code in _SQLITE_UNAVAILABLE_CODES


def _sqlite_code(exc: Exception) -> int | None:
    """Return the primary SQLite result code of a driver error, if it has one."""
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


class Database:
    """An engine plus the sessions every store function works in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.outage = OutageMonitor()
        self._writers = sessionmaker(bind=engine, expire_on_commit=False)
        self._readers = sessionmaker(
            bind=engine.execution_options(**{_READ_ONLY: True}),
            expire_on_commit=False,
        )
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        # A SQLite file's own read connection for one thread, the event
        # loop's, which is the only thread that uses it; see
        # claim_read_connection. An in-memory database has one connection
        # per thread, so it keeps using the pool.
        self._reader_allowed = isinstance(engine.pool, QueuePool) and (
            engine.dialect.name == "sqlite"
        )
        self._reader_thread: int | None = None
        self._reader: Any = None

    @classmethod
    def open(cls, url: str, *, apply_migrations: bool = True) -> Database:
        """Connect to ``url`` and, by default, apply pending migrations."""
        engine = create_engine_for(url)
        if apply_migrations:
            try:
                migrate(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(engine)

    @property
    def dialect(self) -> str:
        """The backend name: ``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """Run one transaction: commit when the block ends, roll back on error.

        With ``read_only`` a SQLite transaction does not take the write
        lock. Writing in such a session may fail with StoreUnavailable
        when another writer got there first.
        """
        factory = self._readers if read_only else self._writers
        try:
            with (
                translate_unavailable("access the database", self.engine),
                factory() as session,
                session.begin(),
            ):
                yield session
        except StoreUnavailable as exc:
            self.outage.failed(exc.message)
            raise
        self.outage.succeeded()

    def claim_read_connection(self) -> None:
        """Give the calling thread its own SQLite connection for DB-API reads.

        The event loop calls this before it runs reads inline. A pool
        checkout costs more than a SQLite point read, so from then on
        :meth:`fetch_rows` on this thread uses one connection that is
        never returned. Only the first thread to call this gets one;
        other threads keep using the pool. PostgreSQL and in-memory
        SQLite always use the pool.
        """
        if self._reader_thread is None and self._reader_allowed:
            self._reader_thread = threading.get_ident()

    def fetch_rows(self, sql: str, params: Any, *, first_only: bool) -> list[Any]:
        """Run one read-only DB-API statement and return its rows.

        It skips the ORM session and SQLAlchemy's statement execution,
        which cost several times a point read on SQLite. Each statement
        runs on its own (autocommit) on SQLite, so it sees every
        transaction committed before it started, and in a transaction
        that the pool rolls back on return on PostgreSQL. Only reads
        belong here. With ``first_only`` at most the first row is
        returned. Driver errors are translated as in :meth:`session`.
        """
        try:
            if self._reader_thread == threading.get_ident():
                rows = self._fetch_on_reader(sql, params, first_only)
            else:
                rows = self._fetch_on_pool(sql, params, first_only)
        except (self._dbapi_error, *_TRANSLATED_ERRORS) as exc:
            self._raise_translated(exc)
        self.outage.succeeded()
        return rows

    def _raise_translated(self, exc: Exception) -> NoReturn:
        # The pool and the cursor raise the driver's own errors, which
        # are wrapped as SQLAlchemy's execute would wrap them.
        wrapped: Exception = exc
        if isinstance(exc, self._dbapi_error):
            wrapped = wrap_driver_error(exc, self._dbapi_error)
        try:
            with translate_unavailable("access the database", self.engine):
                raise wrapped from exc
        except StoreUnavailable as unavailable:
            self.outage.failed(unavailable.message)
            raise

    def _fetch_on_reader(self, sql: str, params: Any, first_only: bool) -> list[Any]:
        reader = self._reader
        if reader is None:
            # Checked out once and detached, so that the pool opens
            # another connection in its place. The engine's connect hook
            # has configured it (autocommit, busy timeout).
            fairy = self.engine.raw_connection()
            fairy.detach()
            reader = self._reader = fairy.dbapi_connection
        try:
            cursor = reader.execute(sql, params)
            # Closing the cursor resets the statement even when rows are
            # left, so no read transaction stays open to hide later
            # commits or hold back WAL checkpoints.
            try:
                return [cursor.fetchone()] if first_only else cursor.fetchall()
            finally:
                cursor.close()
        except self._dbapi_error:
            # Start over on a fresh connection next time, as the pool
            # would with a connection that failed.
            self._close_reader()
            raise

    def _fetch_on_pool(self, sql: str, params: Any, first_only: bool) -> list[Any]:
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql, params)
                return [cursor.fetchone()] if first_only else list(cursor.fetchall())
            finally:
                cursor.close()
        finally:
            connection.close()

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(sqlite3.Error):
                reader.close()

    def dispose(self) -> None:
        """Close every pooled connection and the read connection."""
        self._close_reader()
        self.engine.dispose()


class PreparedStatement:
    """A Core statement compiled once per dialect into its DB-API SQL text.

    Running the SQL text on a DB-API cursor skips the ORM session and
    SQLAlchemy's per-call cache key and compilation lookup. Parameters
    go through the bind processors of their types (JSON, aware
    datetimes), and returned columns through their result processors,
    as through a session. Make one per module-level statement, because
    each keeps its compiled forms.
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, CompiledStatement] = {}

    def compiled(self, dialect: Dialect) -> CompiledStatement:
        """Return the statement's SQL and processors for ``dialect``."""
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _compile(self.statement, dialect)
        return found


class PreparedRead(PreparedStatement):
    """A prepared SELECT run through :meth:`Database.fetch_rows`."""

    def fetch_one(self, db: Database, **params: Any) -> tuple[Any, ...] | None:
        """Run the statement with ``params`` and return its first row."""
        compiled = self.compiled(db.engine.dialect)
        (row,) = db.fetch_rows(compiled.sql, compiled.bind(params), first_only=True)
        if row is None:
            return None
        return compiled.convert(row)

    def fetch_all(self, db: Database, **params: Any) -> list[tuple[Any, ...]]:
        """Run the statement with ``params`` and return every row."""
        compiled = self.compiled(db.engine.dialect)
        rows = db.fetch_rows(compiled.sql, compiled.bind(params), first_only=False)
        return [compiled.convert(row) for row in rows]


@dataclasses.dataclass(frozen=True)
class CompiledStatement:
    """A statement's DB-API SQL for one dialect, with its value processors."""

    sql: str
    # Parameter names in binding order, or None when the driver binds by name.
    order: tuple[str, ...] | None
    # Values of the parameters that the statement fixes, such as literals.
    defaults: Mapping[str, Any]
    # Bind processors by parameter name, only for types that have one.
    binds: Mapping[str, Callable[[Any], Any]]
    # Result processors of the returned columns, None where a value
    # needs no conversion.
    results: tuple[Callable[[Any], Any] | None, ...]
    # The columns that have a processor, by index, so that a row of plain
    # values costs no call per value.
    _converted: tuple[tuple[int, Callable[[Any], Any]], ...] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        converted = tuple(
            (index, process)
            for index, process in enumerate(self.results)
            if process is not None
        )
        object.__setattr__(self, "_converted", converted)

    def bind(self, params: Mapping[str, Any]) -> Any:
        """Return ``params`` as the DB-API driver takes them."""
        converted = {**self.defaults, **params} if self.defaults else dict(params)
        for name, process in self.binds.items():
            if name in converted:
                converted[name] = process(converted[name])
        if self.order is None:
            return converted
        return tuple(converted[name] for name in self.order)

    def convert(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """Convert a DB-API row to the column types' Python values."""
        if len(row) != len(self.results):
            raise ValueError(
                f"cannot convert a row of {len(row)} values: the statement "
                f"returns {len(self.results)} columns"
            )
        values = list(row)
        for index, process in self._converted:
            values[index] = process(values[index])
        return tuple(values)


def _compile(statement: Executable, dialect: Dialect) -> CompiledStatement:
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    # SQLite's "qmark" style binds by position, psycopg's "pyformat" by name.
    order = tuple(compiled.positiontup or ()) if compiled.positional else None
    # dialect_impl: the dialect's own type, such as SQLite's DATETIME,
    # which stores and parses text.
    defaults = {}
    binds = {}
    for name, parameter in compiled.binds.items():
        if not parameter.required:
            defaults[name] = parameter.effective_value
        process = parameter.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binds[name] = process
    columns = getattr(statement, "exported_columns", ())
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in columns
    )
    return CompiledStatement(str(compiled), order, defaults, binds, results)
