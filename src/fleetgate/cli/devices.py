"""``fleetgate device``: list, pre-provision, enable and disable devices.

Devices are normally created when they first connect. Creating one by
name ahead of time lets an operator set it up before it ships: the first
certificate whose ID equals the name adopts it.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from fleetgate.cli.common import (
    DatabaseUrlOption,
    DataDirOption,
    ProjectOption,
    exit_on_error,
    format_enabled,
    format_time,
    opened_database,
    print_message,
    print_table,
)
from fleetgate.store import devices
from fleetgate.store.audit import CLI_ACTOR
from fleetgate.store.database import MAX_PAGE

app = typer.Typer(help="List and manage devices.", no_args_is_help=True)

DeviceArgument = Annotated[
    str,
    typer.Argument(
        metavar="DEVICE",
        help="ID of the device, as device list shows it, or its name.",
    ),
]


@app.command("list")
def list_(
    project_id: ProjectOption,
    name: Annotated[
        str | None,
        typer.Option(help="Show only devices whose name contains this, ignoring case."),
    ] = None,
    page: Annotated[
        int, typer.Option(min=0, max=MAX_PAGE, help="Page to show, from 0.")
    ] = 0,
    per_page: Annotated[
        int,
        typer.Option(min=1, max=devices.MAX_PER_PAGE, help="Devices per page."),
    ] = 100,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List a project's devices, ordered by name."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        result = devices.list_devices(
            db, project_id, name=name, page=page, per_page=per_page
        )

    first = page * per_page
    shown = len(result.items)
    table = Table(
        Column("ID", no_wrap=True),
        "Name",
        "Certificate ID",
        "Enabled",
        Column("Last seen (UTC)", no_wrap=True),
        Column("Certificate expiry (UTC)", no_wrap=True),
        caption=(
            f"{first + 1}-{first + shown} of {result.total}"
            if shown
            else f"0 of {result.total}"
        ),
    )
    for device in result.items:
        table.add_row(
            device.id,
            device.name,
            device.certificate_id or "-",
            format_enabled(device.enabled),
            format_time(device.last_seen_at),
            format_time(device.last_certificate_not_after),
        )
    print_table(table)


@app.command("create")
def create(
    project_id: ProjectOption,
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="Device name. A certificate whose ID equals it adopts the device.",
        ),
    ],
    certificate_id: Annotated[
        str | None,
        typer.Option(
            help="Bind the device to this certificate ID now instead of on "
            "first connection.",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create a device before it first connects."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        device = devices.create_device(
            db, project_id, name, certificate_id=certificate_id, actor=CLI_ACTOR
        )
    print_message(f"Created device {device.id} named {device.name}")


@app.command("disable")
def disable(
    project_id: ProjectOption,
    device: DeviceArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Reject the device's future connections."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        device_id = devices.find_device(db, project_id, device).id
        devices.set_device_enabled(db, project_id, device_id, False, actor=CLI_ACTOR)
    print_message(f"Disabled device {device_id}")


@app.command("enable")
def enable(
    project_id: ProjectOption,
    device: DeviceArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Accept a disabled device's connections again."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        device_id = devices.find_device(db, project_id, device).id
        devices.set_device_enabled(db, project_id, device_id, True, actor=CLI_ACTOR)
    print_message(f"Enabled device {device_id}")
