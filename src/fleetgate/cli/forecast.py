"""``fleetgate forecast``: devices losing service by week if nothing is rotated.

The server chain is read from ``--server-chain`` or, by default, from
the development server PKI in the data folder when it exists. Without
either, the forecast leaves the server chain out and prints a note.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from rich.markup import escape
from rich.table import Column, Table

from fleetgate.cli.common import (
    DatabaseUrlOption,
    DataDirOption,
    ProjectOption,
    exit_on_error,
    format_time,
    opened_database,
    print_message,
    print_table,
    short_fingerprint,
)
from fleetgate.config import Settings
from fleetgate.errors import InvalidInput
from fleetgate.forecast import MAX_WEEKS, ExpiryForecast, expiry_forecast
from fleetgate.forecast import load_server_chain as read_server_chain


def forecast(
    project_id: ProjectOption,
    weeks: Annotated[
        int, typer.Option(min=1, max=MAX_WEEKS, help="Weeks to forecast from now.")
    ] = 52,
    server_chain: Annotated[
        Path | None,
        typer.Option(
            "--server-chain",
            help="PEM chain of the server certificate and the root devices hold "
            "(default: the development server PKI in the data folder).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the API's JSON instead of tables.")
    ] = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Count devices by the week their first certificate expires."""
    with exit_on_error():
        chain = _server_chain(server_chain, data_dir, database_url)
        with opened_database(data_dir, database_url) as db:
            result = expiry_forecast(
                db,
                project_id,
                now=dt.datetime.now(dt.UTC),
                weeks=weeks,
                server_chain=chain,
            )
    if as_json:
        print_message(json.dumps(result.to_json(), indent=2))
        return
    if not chain:
        print_message("No server chain found: the forecast leaves it out.")
    _print(result)


def _server_chain(
    path: Path | None, data_dir: Path | None, database_url: str | None
) -> list[x509.Certificate]:
    if path is not None:
        try:
            return read_server_chain(path, None)
        except OSError as exc:
            raise InvalidInput(
                f"cannot read server chain {path}: {exc.strerror}"
            ) from exc
    folder = Settings.from_options(data_dir, database_url).server_pki_dir
    chain_path, root_path = folder / "server-chain.pem", folder / "server-ca.pem"
    if not chain_path.exists():
        return []
    return read_server_chain(chain_path, root_path if root_path.exists() else None)


def _print(result: ExpiryForecast) -> None:
    weeks = Table(
        Column("Week from (UTC)", no_wrap=True),
        Column("Devices", justify="right"),
        Column("Own certificate", justify="right"),
        Column("CA", justify="right"),
        Column("Server", justify="right"),
        title="Devices losing service",
    )
    for week in result.weeks:
        if week.devices:
            weeks.add_row(
                format_time(week.start),
                str(week.devices),
                str(week.by_device_certificate),
                str(week.by_ca),
                str(week.by_server),
            )
    print_table(weeks)
    print_message(
        f"{result.devices} devices: {result.expired} already without service, "
        f"{sum(week.devices for week in result.weeks)} within "
        f"{len(result.weeks)} weeks, {result.beyond} later"
    )

    certificates = Table(
        "Kind",
        "Subject",
        Column("Fingerprint", no_wrap=True),
        Column("Expires (UTC)", no_wrap=True),
        Column("Devices", justify="right"),
        Column("Ends first", justify="right"),
        title="CA and server certificates",
    )
    for item in result.certificates:
        certificates.add_row(
            item.kind,
            escape(item.subject),
            short_fingerprint(item.fingerprint),
            format_time(item.not_after),
            str(item.devices),
            str(item.devices_lost),
        )
    print_table(certificates)
