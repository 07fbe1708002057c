"""Engines, migrations and error translation."""

from __future__ import annotations

import datetime as dt
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import bindparam, event, inspect, select, text, update
from sqlalchemy.exc import DBAPIError

from fleetgate.errors import InvalidInput, StoreUnavailable
from fleetgate.store import devices, projects
from fleetgate.store.database import (
    Database,
    PreparedRead,
    create_engine_for,
    migrate,
)
from fleetgate.store.models import Base, Device


def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    engine = create_engine_for(database_url)
    try:
        migrate(engine)
        migrate(engine)
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == {*Base.metadata.tables, "alembic_version"}


def test_migrated_schema_matches_models(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_concurrent_migrations_all_succeed(database_url: str) -> None:
    engines = [create_engine_for(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines), timeout=30)
    errors: list[BaseException] = []

    def run(engine_index: int) -> None:
        try:
            barrier.wait()
            migrate(engines[engine_index])
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.dispose()
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)


def test_sqlite_engine_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'nested' / 'f.db'}")
    try:
        with engine.connect() as connection:
            journal = connection.execute(text("PRAGMA journal_mode")).scalar()
            foreign_keys = connection.execute(text("PRAGMA foreign_keys")).scalar()
            busy = connection.execute(text("PRAGMA busy_timeout")).scalar()
    finally:
        engine.dispose()
    assert journal == "wal"
    assert foreign_keys == 1
    assert busy == 30_000
    assert (tmp_path / "nested" / "f.db").exists()


def test_plain_postgresql_url_uses_psycopg() -> None:
    engine = create_engine_for("postgresql://user@127.0.0.1:1/db")
    try:
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("mysql://user@127.0.0.1/db", id="fail/mysql"),
        pytest.param("not a url", id="fail/garbage"),
    ],
)
def test_unsupported_url_is_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput):
        create_engine_for(url)


def test_unreachable_server_is_store_unavailable() -> None:
    # Port 1 on loopback has no listener, so the connection is refused.
    with pytest.raises(StoreUnavailable, match="cannot migrate the database"):
        Database.open("postgresql://fleetgate@127.0.0.1:1/none")


def test_missing_postgres_driver_names_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry makes "import psycopg" raise ImportError.
    monkeypatch.setitem(sys.modules, "psycopg", None)

    with pytest.raises(StoreUnavailable) as caught:
        create_engine_for("postgresql://fleetgate:secret@127.0.0.1:1/db")

    message = caught.value.message
    assert "the PostgreSQL driver psycopg is not installed" in message
    assert "pip install 'fleetgate[postgres]'" in message
    assert "secret" not in message


def test_session_commits_on_success(database: Database) -> None:
    with database.session() as session:
        session.execute(
            text(
                "INSERT INTO projects (id, name, require_v3, created_at) "
                "VALUES ('p', 'P', false, CURRENT_TIMESTAMP)"
            )
        )
    with database.session(read_only=True) as session:
        count = session.execute(text("SELECT count(*) FROM projects")).scalar()
    assert count == 1


def test_session_rolls_back_on_error(database: Database) -> None:
    with pytest.raises(RuntimeError), database.session() as session:
        session.execute(
            text(
                "INSERT INTO projects (id, name, require_v3, created_at) "
                "VALUES ('p', 'P', false, CURRENT_TIMESTAMP)"
            )
        )
        raise RuntimeError("abort")
    with database.session(read_only=True) as session:
        count = session.execute(text("SELECT count(*) FROM projects")).scalar()
    assert count == 0


def test_unopenable_sqlite_file_is_store_unavailable(tmp_path: Path) -> None:
    # A folder where the database file should be cannot be opened.
    with pytest.raises(StoreUnavailable) as caught:
        Database.open(f"sqlite:///{tmp_path}")
    assert caught.value.__cause__ is not None


def test_data_folder_that_is_a_file_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(StoreUnavailable, match="cannot create database folder"):
        create_engine_for(f"sqlite:///{tmp_path / 'taken' / 'f.db'}")


def test_non_sqlite_file_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "fleetgate.db"
    path.write_bytes(bytes(range(256)) * 32)

    with pytest.raises(StoreUnavailable) as caught:
        Database.open(f"sqlite:///{path}")

    assert f"{path} is not a SQLite database or is damaged" in caught.value.message
    assert caught.value.__cause__ is not None


def test_session_on_non_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "fleetgate.db"
    path.write_bytes(bytes(range(256)) * 32)
    db = Database.open(f"sqlite:///{path}", apply_migrations=False)
    try:
        with (
            pytest.raises(StoreUnavailable, match="cannot access the database"),
            db.session(read_only=True) as session,
        ):
            session.execute(text("SELECT 1"))
    finally:
        db.dispose()


def test_new_sqlite_files_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "fleetgate-data"
    path = folder / "fleetgate.db"
    previous = os.umask(0o022)
    try:
        db = Database.open(f"sqlite:///{path}")
        try:
            # Keep a connection open, so the -wal and -shm files stay.
            with db.engine.connect() as connection:
                connection.execute(text("SELECT count(*) FROM projects"))
                modes = {
                    file.name: stat.S_IMODE(file.stat().st_mode)
                    for file in folder.iterdir()
                }
        finally:
            db.dispose()
    finally:
        os.umask(previous)

    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert modes == {
        "fleetgate.db": 0o600,
        "fleetgate.db-wal": 0o600,
        "fleetgate.db-shm": 0o600,
    }


def test_existing_sqlite_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "fleetgate.db"
    path.touch(mode=0o640)
    path.chmod(0o640)

    Database.open(f"sqlite:///{path}").dispose()

    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_sql_error_is_not_store_unavailable(database: Database) -> None:
    with pytest.raises(DBAPIError), database.session() as session:
        session.execute(text("SELECT * FROM no_such_table"))


def test_sqlite_reader_does_not_wait_for_writer(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        with db.session() as writer:
            writer.execute(
                text(
                    "INSERT INTO projects (id, name, require_v3, created_at) "
                    "VALUES ('p', 'P', false, CURRENT_TIMESTAMP)"
                )
            )
            # The writer holds the write lock until its block ends, so a
            # reader that also took it would wait the full busy timeout.
            started = time.monotonic()
            with db.session(read_only=True) as reader:
                count = reader.execute(text("SELECT count(*) FROM projects")).scalar()
            waited = time.monotonic() - started
    finally:
        db.dispose()
    assert count == 0
    assert waited < 5


class TestPreparedRead:
    QUERY = PreparedRead(
        select(
            Device.name,
            Device.enabled,
            Device.last_certificate_not_after,
            Device.ca_chain,
        ).where(Device.certificate_id == bindparam("certificate_id"))
    )

    def test_row_matches_session(self, database: Database) -> None:
        projects.create_project(database, "acme")
        device = devices.create_device(database, "acme", "d-1", certificate_id="d-1")
        not_after = dt.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
        chain = [{"fingerprint": "ab" * 32, "subject": "CN=Root"}]
        with database.session() as session:
            session.execute(
                update(Device)
                .where(Device.id == device.id)
                .values(last_certificate_not_after=not_after, ca_chain=chain)
            )

        row = self.QUERY.fetch_one(database, certificate_id="d-1")

        assert row == ("d-1", True, not_after, chain)
        assert row is not None
        assert row[2].tzinfo is not None

    def test_missing_row_is_none(self, database: Database) -> None:
        assert self.QUERY.fetch_one(database, certificate_id="nobody") is None


class TestReadConnection:
    NAME = PreparedRead(
        select(Device.name).where(Device.certificate_id == bindparam("certificate_id"))
    )
    # More than one row, so fetch_one leaves rows unread.
    NAMES = PreparedRead(
        select(Device.name)
        .where(Device.project_id == bindparam("project_id"))
        .order_by(Device.name)
    )

    def test_read_sees_commit_of_other_connection(self, database: Database) -> None:
        projects.create_project(database, "acme")
        devices.create_device(database, "acme", "d-1", certificate_id="d-1")
        database.claim_read_connection()
        assert self.NAME.fetch_one(database, certificate_id="d-1") == ("d-1",)

        with database.session() as session:
            session.execute(
                update(Device).where(Device.name == "d-1").values(name="renamed")
            )

        assert self.NAME.fetch_one(database, certificate_id="d-1") == ("renamed",)

    def test_unread_rows_keep_no_snapshot(self, database: Database) -> None:
        projects.create_project(database, "acme")
        project = projects.get_project(database, "acme")
        for name in ("d-1", "d-2"):
            devices.create_device(database, "acme", name, certificate_id=name)
        database.claim_read_connection()
        assert self.NAMES.fetch_one(database, project_id=project.id) == ("d-1",)

        with database.session() as session:
            session.execute(
                update(Device).where(Device.name == "d-1").values(name="d-0")
            )

        assert self.NAMES.fetch_one(database, project_id=project.id) == ("d-0",)

    def test_other_thread_reads_beside_owner(self, database: Database) -> None:
        projects.create_project(database, "acme")
        devices.create_device(database, "acme", "d-1", certificate_id="d-1")
        database.claim_read_connection()
        assert self.NAME.fetch_one(database, certificate_id="d-1") == ("d-1",)
        rows: list[object] = []

        def read() -> None:
            database.claim_read_connection()
            rows.extend(self.NAMES.fetch_all(database, project_id="nobody"))
            rows.append(self.NAME.fetch_one(database, certificate_id="d-1"))

        worker = threading.Thread(target=read)
        worker.start()
        worker.join(timeout=30)

        assert rows == [("d-1",)]

    def test_owner_reads_without_pool_checkout(self, tmp_path: Path) -> None:
        db = Database.open(f"sqlite:///{tmp_path / 'fleetgate.db'}")
        checkouts: list[object] = []
        event.listen(db.engine, "checkout", lambda *args: checkouts.append(args))
        try:
            db.claim_read_connection()
            self.NAME.fetch_one(db, certificate_id="nobody")
            first = len(checkouts)
            for _ in range(3):
                self.NAME.fetch_one(db, certificate_id="nobody")
            # A thread that never claimed keeps checking out.
            worker = threading.Thread(
                target=self.NAME.fetch_one, args=(db,), kwargs={"certificate_id": "x"}
            )
            worker.start()
            worker.join(timeout=30)
        finally:
            db.dispose()
        # The first read checks out the connection that it keeps.
        assert first == 1
        assert len(checkouts) == 2

    def test_failed_read_opens_new_connection(self, tmp_path: Path) -> None:
        db = Database.open(f"sqlite:///{tmp_path / 'fleetgate.db'}")
        try:
            db.claim_read_connection()
            self.NAME.fetch_one(db, certificate_id="nobody")
            # A missing table is a bug, not an outage: the driver error
            # passes through as SQLAlchemy's.
            with pytest.raises(DBAPIError):
                db.fetch_rows("SELECT * FROM missing", (), first_only=True)
            row = self.NAME.fetch_one(db, certificate_id="nobody")
        finally:
            db.dispose()
        assert row is None

    def test_read_of_damaged_file_is_unavailable(self, tmp_path: Path) -> None:
        path = tmp_path / "fleetgate.db"
        path.write_bytes(b"not a database" * 100)
        db = Database.open(f"sqlite:///{path}", apply_migrations=False)
        try:
            db.claim_read_connection()
            with pytest.raises(StoreUnavailable, match="is not a SQLite database"):
                self.NAME.fetch_one(db, certificate_id="nobody")
        finally:
            db.dispose()
