"""``fleetgate apikey``: create, list and revoke management API keys.

A project key reaches one project's certificates, devices and state
through the management API. An admin key (``--admin``) reaches every
project and may create projects. A key is printed once, when it is
created. Fleetgate stores only its SHA-256, so a lost key cannot be
shown again: revoke it and create another.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from fleetgate.cli.common import (
    DatabaseUrlOption,
    DataDirOption,
    error_console,
    exit_on_error,
    format_time,
    opened_database,
    print_message,
    print_table,
)
from fleetgate.store import apikeys
from fleetgate.store.audit import CLI_ACTOR

app = typer.Typer(
    help="Create, list and revoke management API keys.", no_args_is_help=True
)

KeyProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        show_default=False,
        help="ID of the project that the key reaches, such as acme-sensors.",
    ),
]
AdminOption = Annotated[
    bool,
    typer.Option(
        "--admin", help="Use an admin key, which reaches every project, instead."
    ),
]


@app.command("create")
def create(
    project_id: KeyProjectOption = None,
    admin: AdminOption = False,
    name: Annotated[
        str | None,
        typer.Option(
            help="Label shown in listings (default: the project ID, or admin).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create an API key and print it once."""
    scope = _scope(project_id, admin)
    with exit_on_error(), opened_database(data_dir, database_url, create=True) as db:
        issued = apikeys.create_api_key(db, scope, name=name, actor=CLI_ACTOR)

    reach = "every project" if scope is None else f"project {scope}"
    # The key alone goes to standard output, so that a script can
    # capture it, and the explanation to standard error.
    error_console.print(
        f"Created API key {issued.record.id} for {reach}. It is shown only "
        "once; send it in the x-api-key header.",
        soft_wrap=True,
        markup=False,
    )
    print_message(issued.secret)


@app.command("list")
def list_(
    project_id: KeyProjectOption = None,
    admin: AdminOption = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List a project's API keys, or the admin keys, without their secrets."""
    scope = _scope(project_id, admin)
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        keys = apikeys.list_api_keys(db, scope)

    table = Table(
        Column("ID", no_wrap=True),
        "Name",
        Column("Prefix", no_wrap=True),
        Column("Created (UTC)", no_wrap=True),
        Column("Last used (UTC)", no_wrap=True),
        Column("Revoked (UTC)", no_wrap=True),
    )
    for key in keys:
        table.add_row(
            key.id,
            key.name,
            key.prefix + "…",
            format_time(key.created_at),
            format_time(key.last_used_at),
            format_time(key.revoked_at),
        )
    print_table(table)


@app.command("revoke")
def revoke(
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="ID of the key, from 'list'.")
    ],
    project_id: KeyProjectOption = None,
    admin: AdminOption = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Revoke an API key. Requests that send it fail with 401 from then on."""
    scope = _scope(project_id, admin)
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        apikeys.revoke_api_key(db, scope, key_id, actor=CLI_ACTOR)
    print_message(f"Revoked API key {key_id}")


def _scope(project_id: str | None, admin: bool) -> str | None:
    if admin == (project_id is not None):
        error_console.print(
            "[red]error:[/] give either --project ID or --admin", soft_wrap=True
        )
        raise typer.Exit(2)
    return project_id
