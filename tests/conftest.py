"""Fixtures shared by every test folder: a fresh, migrated database.

``database`` runs each test on SQLite, and also on PostgreSQL when
FLEETGATE_TEST_POSTGRES_URL names a server (``tests/pg_server.sh start``
prints such a URL). Each PostgreSQL test gets a schema of its own that
is dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from fleetgate.store.database import Database

# With CI set in the environment, the property and fuzz tests draw a
# fixed set of examples, so a submission cannot fail on a new random
# draw. Local runs keep exploring fresh examples.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

POSTGRES_URL_ENV = "FLEETGATE_TEST_POSTGRES_URL"

_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=pytest.mark.skipif(
            not os.environ.get(POSTGRES_URL_ENV),
            reason=f"{POSTGRES_URL_ENV} is not set",
        ),
    ),
]


@pytest.fixture(params=_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database, on each backend under test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fleetgate.db'}"
        return
    yield from _postgres_schema(os.environ[POSTGRES_URL_ENV])


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A migrated database, disposed of after the test."""
    db = Database.open(database_url)
    try:
        yield db
    finally:
        db.dispose()


def _postgres_schema(server_url: str) -> Iterator[str]:
    schema = f"test_{secrets.token_hex(6)}"
    admin = create_engine(
        make_url(server_url).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        # libpq's "options" makes the schema the first on the search
        # path of every connection, so unqualified tables land in it.
        url = make_url(server_url).update_query_dict(
            {"options": f"-csearch_path={schema}"}
        )
        yield url.render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
