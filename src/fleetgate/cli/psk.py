"""``fleetgate psk``: add, list and delete the pre-shared keys of devices.

A PSK credential belongs to a device created beforehand (``fleetgate
device create``). Its identity is ``<psk-id>@<project-id>``, and its key
is printed once, by ``add``: the database stores it sealed by the data
folder's key-encryption key, and no command shows it again. A running
``fleetgate serve`` picks up a change made here within 2 seconds.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from fleetgate.cli.common import (
    DatabaseUrlOption,
    DataDirOption,
    ProjectOption,
    error_console,
    exit_on_error,
    format_time,
    opened_database,
    print_message,
    print_table,
)
from fleetgate.cli.devices import DeviceArgument
from fleetgate.config import Settings
from fleetgate.store import devices, psk
from fleetgate.store.audit import CLI_ACTOR
from fleetgate.store.sealing import KeyEncryptionKey

app = typer.Typer(
    help="Add, list and delete the pre-shared keys (DTLS PSK) of devices.",
    no_args_is_help=True,
)


@app.command("add")
def add(
    project_id: ProjectOption,
    device: DeviceArgument,
    identity: Annotated[
        str | None,
        typer.Option(
            help="PSK identity, <psk-id>@<project-id> (default: "
            "<UTC time>-<device name>@<project-id>).",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="The key as hex digits, 16 to 64 bytes, such as the output "
            "of 'openssl rand -hex 32' (default: 32 random characters).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Give a device a PSK credential and print its key once."""
    settings = Settings.from_options(data_dir, database_url)
    with exit_on_error():
        key_bytes = None if key is None else psk.decode_psk(key)
        with opened_database(data_dir, database_url) as db:
            device_id = devices.find_device(db, project_id, device).id
            # Made only once the device is found, so a mistyped project
            # or device leaves no key file behind.
            kek = KeyEncryptionKey.load_or_create(settings.key_encryption_key_file)
            issued = psk.create_psk_credential(
                db,
                kek,
                project_id,
                device_id,
                identity=identity,
                key=key_bytes,
                actor=CLI_ACTOR,
            )

    record = issued.record
    # The key goes to standard output, so that a script can capture it,
    # and the explanation to standard error.
    error_console.print(
        f"Created PSK credential {record.id} for device {record.device_id} "
        f"with identity {record.identity}. The key below, in hex, is shown "
        "only once.",
        soft_wrap=True,
        markup=False,
    )
    text = issued.key.decode("ascii", "replace")
    if issued.generated:
        error_console.print(
            f"As text, which firmware that takes its PSK as a string uses: {text}",
            soft_wrap=True,
            markup=False,
        )
    print_message(issued.key.hex())


@app.command("list")
def list_(
    project_id: ProjectOption,
    device: DeviceArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List a device's PSK credentials, without their keys."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        device_id = devices.find_device(db, project_id, device).id
        records = psk.list_psk_credentials(db, project_id, device_id)

    table = Table(
        Column("ID", no_wrap=True),
        "Identity",
        Column("Created (UTC)", no_wrap=True),
        Column("Last used (UTC)", no_wrap=True),
    )
    for record in records:
        table.add_row(
            record.id,
            record.identity,
            format_time(record.created_at),
            format_time(record.last_used_at),
        )
    print_table(table)


@app.command("delete")
def delete(
    project_id: ProjectOption,
    credential_id: Annotated[
        str,
        typer.Argument(
            metavar="CREDENTIAL_ID", help="ID of the credential, from 'list'."
        ),
    ],
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Delete a PSK credential. Its device can no longer connect with it."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        record = psk.delete_psk_credential(
            db, project_id, credential_id, actor=CLI_ACTOR
        )
    print_message(f"Deleted PSK credential {record.id} ({record.identity})")
