"""Alembic environment for Fleetgate's schema.

:func:`fleetgate.store.database.migrate` passes an open connection in
``config.attributes["connection"]``, already inside a transaction. When
Alembic's own command line runs this file instead (to write a new
revision), the URL comes from ``-x url=...`` or FLEETGATE_DATABASE_URL.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from fleetgate.config import DATABASE_URL_ENV
from fleetgate.store.database import create_engine_for
from fleetgate.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configured_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or os.environ.get(DATABASE_URL_ENV)
    if not url:
        raise SystemExit(
            f"cannot run migrations: pass -x url=... or set {DATABASE_URL_ENV}"
        )
    return url


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place, so later revisions
        # rebuild tables through Alembic's batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Write the migration SQL to standard output instead of running it."""
    context.configure(
        url=_configured_url(),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the given connection, or open one."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return

    engine = create_engine_for(_configured_url())
    try:
        with engine.begin() as opened:
            _run_on(opened)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
