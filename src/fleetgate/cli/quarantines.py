"""``fleetgate quarantine``: disable a manifest batch or a CA's devices at once.

The command line changes the database only. A running ``fleetgate
serve`` ends the open sessions of the disabled devices at their next
request after its recheck interval; the management API's quarantine
closes those it serves at once.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from fleetgate.cli.common import (
    DatabaseUrlOption,
    DataDirOption,
    ProjectOption,
    count_of,
    exit_on_error,
    format_time,
    opened_database,
    print_message,
    print_table,
    short_fingerprint,
)
from fleetgate.store import quarantines
from fleetgate.store.audit import CLI_ACTOR

app = typer.Typer(
    help="Disable and restore groups of devices together.", no_args_is_help=True
)


@app.command("start")
def start(
    project_id: ProjectOption,
    batch: Annotated[
        str | None, typer.Option(help="Quarantine the devices of this manifest batch.")
    ] = None,
    ca: Annotated[
        str | None,
        typer.Option(
            help="Quarantine devices whose chain goes through the CA certificate "
            "with this SHA-256 fingerprint."
        ),
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Disable every device of a batch, or under a CA certificate."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        record = quarantines.start_quarantine(
            db, project_id, batch=batch, ca_fingerprint=ca, actor=CLI_ACTOR
        )
    print_message(
        f"Started quarantine {record.id}: "
        f"{count_of(len(record.device_ids), 'device')} disabled"
    )


@app.command("release")
def release(
    quarantine_id: Annotated[
        str, typer.Argument(metavar="QUARANTINE", help="ID from quarantine list.")
    ],
    project_id: ProjectOption,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Re-enable exactly the devices a quarantine disabled."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        record = quarantines.release_quarantine(
            db, project_id, quarantine_id, actor=CLI_ACTOR
        )
    print_message(
        f"Released quarantine {record.id}: "
        f"{count_of(len(record.device_ids), 'device')} enabled"
    )


@app.command("list")
def list_(
    project_id: ProjectOption,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List the project's quarantines, newest first."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        records = quarantines.list_quarantines(db, project_id)
    table = Table(
        Column("ID", no_wrap=True),
        "Kind",
        "Target",
        "Devices",
        Column("Started (UTC)", no_wrap=True),
        Column("Released (UTC)", no_wrap=True),
    )
    for record in records:
        target = (
            short_fingerprint(record.target) if record.kind == "ca" else record.target
        )
        table.add_row(
            record.id,
            record.kind,
            target,
            str(len(record.device_ids)),
            format_time(record.created_at),
            format_time(record.released_at),
        )
    print_table(table)
