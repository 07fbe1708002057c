"""``fleetgate project``: create and list projects."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fleetgate.cli.common import (
    DatabaseUrlOption,
    DataDirOption,
    exit_on_error,
    format_time,
    opened_database,
    print_message,
    print_table,
)
from fleetgate.store import projects
from fleetgate.store.audit import CLI_ACTOR

app = typer.Typer(help="Create and list projects.", no_args_is_help=True)


@app.command("create")
def create(
    project_id: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="Project ID: 1-63 characters from a-z, 0-9 and '-'. "
            "Device certificates carry it as subject O.",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(help="Display name (default: the ID).", show_default=False),
    ] = None,
    require_v3: Annotated[
        bool,
        typer.Option(
            "--require-v3",
            help="Reject X.509 v1 device certificates, which are accepted by default.",
        ),
    ] = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create a project."""
    with exit_on_error(), opened_database(data_dir, database_url, create=True) as db:
        project = projects.create_project(
            db, project_id, name=name, require_v3=require_v3, actor=CLI_ACTOR
        )
    print_message(f"Created project {project.id}")


@app.command("list")
def list_(
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List every project."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        rows = projects.list_projects(db)

    table = Table("ID", "Name", "Requires v3", "Created (UTC)")
    for project in rows:
        table.add_row(
            project.id,
            project.name,
            "yes" if project.require_v3 else "no",
            format_time(project.created_at),
        )
    print_table(table)
