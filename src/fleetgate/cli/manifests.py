"""``fleetgate manifest``: manufacturing manifests of expected certificate IDs.

``import`` reads a CSV file with a header line (``certificate_id`` and
optionally ``batch``, ``serial``, ``hardware_id``) or a JSON list of such
objects, and stores all rows or none. ``report`` lists devices that
connected without being listed, listed certificate IDs never seen, and
certificate IDs seen from two addresses at once. ``require`` limits
zero-touch provisioning to listed certificate IDs.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
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
)
from fleetgate.errors import InvalidInput
from fleetgate.store import manifests
from fleetgate.store.audit import CLI_ACTOR

app = typer.Typer(
    help="Import and compare manufacturing manifests.", no_args_is_help=True
)


class Switch(enum.StrEnum):
    """A project flag's new value."""

    ON = "on"
    OFF = "off"


@app.command("import")
def import_(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="CSV file with a header, or JSON.")
    ],
    project_id: ProjectOption,
    batch: Annotated[
        str | None,
        typer.Option(help="Batch of rows without a batch column; rows must match."),
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Import every row of a manifest, or none when any row is invalid."""
    with exit_on_error():
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read manifest {file}: {exc.strerror}") from exc
        json_format = True if file.suffix.lower() == ".json" else None
        rows = manifests.parse_manifest(content, batch=batch, json_format=json_format)
        with opened_database(data_dir, database_url) as db:
            summaries = manifests.import_manifest(db, project_id, rows, actor=CLI_ACTOR)
    print_message(f"Imported {len(rows)} entries")
    _print_batches(summaries)


@app.command("list")
def list_(
    project_id: ProjectOption,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List the project's manifest batches."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        summaries = manifests.list_batches(db, project_id)
    _print_batches(summaries)


@app.command("delete")
def delete(
    batch: Annotated[str, typer.Argument(metavar="BATCH", help="Name of the batch.")],
    project_id: ProjectOption,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Delete a batch; its devices are left as they are."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        count = manifests.delete_batch(db, project_id, batch, actor=CLI_ACTOR)
    print_message(f"Deleted batch {batch} with {count} entries")


@app.command("report")
def report(
    project_id: ProjectOption,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Compare the manifest with the devices that have connected."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        result = manifests.manifest_report(db, project_id)

    table = Table("Problem", "Certificate ID", "Batch", "Details", title="Manifest")
    for certificate_id in result.unlisted:
        table.add_row("connected, not listed", escape(certificate_id), "-", "")
    for batch, certificate_id in result.never_seen:
        table.add_row("listed, never seen", escape(certificate_id), escape(batch), "")
    for suspect in result.clone_suspects:
        table.add_row(
            "possible clone",
            escape(suspect.certificate_id),
            escape(result.clone_batches.get(suspect.certificate_id, "-")),
            f"{', '.join(suspect.addresses)} at {format_time(suspect.detected_at)}",
        )
    print_table(table)
    print_message(
        f"{len(result.unlisted)} not listed, {len(result.never_seen)} never "
        f"seen, {count_of(len(result.clone_suspects), 'possible clone')}"
    )


@app.command("require")
def require(
    value: Annotated[
        Switch, typer.Argument(help="on: create devices only for listed IDs.")
    ],
    project_id: ProjectOption,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Turn the project's manifest requirement on or off."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        manifests.set_require_manifest(
            db, project_id, value is Switch.ON, actor=CLI_ACTOR
        )
    print_message(f"Manifest requirement of project {project_id} is {value}")


def _print_batches(summaries: list[manifests.BatchSummary]) -> None:
    table = Table(
        "Batch", "Entries", Column("Imported (UTC)", no_wrap=True), title="Batches"
    )
    for summary in summaries:
        table.add_row(
            escape(summary.batch),
            str(summary.entries),
            format_time(summary.imported_at),
        )
    print_table(table)
