"""Options and error handling shared by every ``fleetgate`` command.

Each command takes ``--data-dir`` and ``--database-url`` through the
option types below, opens the database with :func:`opened_database`
(which applies pending migrations) and runs its body inside
:func:`exit_on_error`, so a :class:`~fleetgate.errors.FleetgateError`
ends the command with one red line on standard error and exit code 1,
never a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleetgate.config import DATA_DIR_ENV, DATABASE_URL_ENV, Settings
from fleetgate.errors import FleetgateError, NotFound
from fleetgate.store.database import Database

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar=DATA_DIR_ENV,
        show_default=False,
        help=(
            "Folder of the SQLite database and the server PKI "
            "(default: ./fleetgate-data)."
        ),
    ),
]

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar=DATABASE_URL_ENV,
        show_default=False,
        help=(
            "SQLAlchemy URL of the database, such as "
            "postgresql://user@host/fleetgate "
            "(default: SQLite in the data folder)."
        ),
    ),
]

ProjectOption = Annotated[
    str,
    typer.Option("--project", "-p", help="ID of the project, such as acme-sensors."),
]

# Results go to standard output and errors to standard error, so that
# scripts can parse the results.
console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False)

# Hex digits of a fingerprint shown in tables, enough to tell CAs apart
# by eye. Commands that name one CA print the whole fingerprint.
SHORT_FINGERPRINT = 16

# Width of the console that renders tables for a pipe or a file. Rich
# would otherwise use 80 columns there and cut long cells with "…". A
# table without expand takes only the width its cells need, so this only
# has to exceed the widest row: a 128-character certificate ID, a name of
# 200 and a CA subject of 1024 characters fit many times over.
PIPE_WIDTH = 100_000


@contextlib.contextmanager
def exit_on_error() -> Iterator[None]:
    """Turn a FleetgateError into a one-line red message and exit code 1."""
    try:
        yield
    except FleetgateError as exc:
        message = " ".join(exc.message.split())
        error_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
        raise typer.Exit(1) from None


@contextlib.contextmanager
def opened_database(
    data_dir: Path | None, database_url: str | None, *, create: bool = False
) -> Iterator[Database]:
    """Open the configured database, apply migrations, and close it afterwards.

    Without a database URL and unless ``create`` is set, a data folder
    without ``fleetgate.db`` raises NotFound, so a mistyped ``--data-dir``
    is reported instead of starting an empty database there. Only commands
    that can run before any project exists pass ``create``: ``project
    create`` and ``apikey create``. Every other command needs a project,
    so it fails here, before it creates a file, rather than with "cannot
    find project" after it made an empty database. ``fleetgate serve``
    creates the folder itself.
    """
    settings = Settings.from_options(data_dir, database_url)
    database_file = settings.default_database_file
    if not create and settings.database_url is None and not database_file.exists():
        raise NotFound(
            f"cannot open the database: {database_file} does not exist; run "
            "the command in the folder where fleetgate serve or fleetgate "
            "project create made fleetgate-data, or pass --data-dir with "
            "that folder"
        )
    db = Database.open(settings.resolved_database_url)
    try:
        yield db
    finally:
        db.dispose()


def print_message(text: str) -> None:
    """Print a result line to standard output, unwrapped and without markup."""
    console.print(escape(text), soft_wrap=True)


def print_table(table: Table) -> None:
    """Print a table at the terminal's width, or wide when piped."""
    if console.is_terminal:
        console.print(table)
        return
    # Console.print(width=...) cannot exceed the console's own width, so a
    # wider console is made for the pipe.
    Console(highlight=False, width=PIPE_WIDTH).print(table)


def format_time(value: dt.datetime | None) -> str:
    """Format a UTC timestamp to the minute for a table, or ``-`` for none."""
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def short_fingerprint(fingerprint: str) -> str:
    """Shorten a hex fingerprint for a table column."""
    if len(fingerprint) <= SHORT_FINGERPRINT:
        return fingerprint
    return fingerprint[:SHORT_FINGERPRINT] + "…"


def format_enabled(enabled: bool) -> str:
    """Render an enabled flag as a table cell."""
    return "yes" if enabled else "[red]no[/]"


def count_of(count: int, noun: str, plural: str | None = None) -> str:
    """Render ``count`` with ``noun`` in the singular or plural, as "1 device"."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {plural or noun + 's'}"
