"""``fleetgate device certificates``: the certificates issued to a device.

Each row is one certificate that the project's PKI provider issued for
the device's CSR on ``POST v1/csr``, newest first.
"""

from __future__ import annotations

from rich.table import Column, Table

from fleetgate.cli.common import (
    DatabaseUrlOption,
    DataDirOption,
    ProjectOption,
    exit_on_error,
    format_time,
    opened_database,
    print_table,
    short_fingerprint,
)
from fleetgate.cli.devices import DeviceArgument
from fleetgate.store import devices, issued_certificates


def certificates(
    project_id: ProjectOption,
    device: DeviceArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List the certificates issued to a device through rotation."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        device_id = devices.find_device(db, project_id, device).id
        issued = issued_certificates.list_issued_certificates(db, project_id, device_id)

    table = Table(
        Column("Issued (UTC)", no_wrap=True),
        Column("Serial", no_wrap=True),
        Column("Fingerprint", no_wrap=True),
        Column("Not before (UTC)", no_wrap=True),
        Column("Not after (UTC)", no_wrap=True),
        "Provider",
        caption=f"{len(issued)} certificate(s)",
    )
    for record in issued:
        table.add_row(
            format_time(record.created_at),
            record.serial,
            short_fingerprint(record.fingerprint),
            format_time(record.not_before),
            format_time(record.not_after),
            record.provider,
        )
    print_table(table)
