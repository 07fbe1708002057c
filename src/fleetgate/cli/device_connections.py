"""``fleetgate device connections``: a project's connection log.

Each row is a handshake accepted or rejected, the end of an accepted
session, or a suspected clone, newest first. ``--before`` continues
from the ID in the last row of the previous listing. ``--clones`` lists
the certificate IDs suspected of being cloned instead.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Column, Table

from fleetgate.cli.common import (
    DatabaseUrlOption,
    DataDirOption,
    ProjectOption,
    exit_on_error,
    opened_database,
    print_table,
    short_fingerprint,
)
from fleetgate.store import connections
from fleetgate.store.connections import CloneSuspect, ConnectionEvent, ConnectionResult


def connections_(
    project_id: ProjectOption,
    certificate_id: Annotated[
        str | None,
        typer.Option("--certificate-id", help="Show only this certificate ID."),
    ] = None,
    result: Annotated[
        ConnectionResult | None,
        typer.Option(case_sensitive=False, help="Show only events with this result."),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(help="Show only events with this reason code, such as expired."),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(min=1, max=connections.MAX_LIMIT, help="Events to show."),
    ] = 50,
    before: Annotated[
        int | None,
        typer.Option(min=1, help="Show only events older than the event of this ID."),
    ] = None,
    clones: Annotated[
        bool,
        typer.Option("--clones", help="List suspected clones instead of events."),
    ] = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List a project's connection log, newest first."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        if clones:
            suspects = connections.clone_suspects(db, project_id)
        else:
            filters = {
                "result": result.value if result is not None else None,
                "reason": reason,
                "certificate_id": certificate_id,
            }
            events = connections.list_events(
                db, project_id, limit=limit, before_id=before, **filters
            )
            total = connections.count_events(db, project_id, **filters)

    if clones:
        print_table(_clone_table(suspects))
    else:
        print_table(_event_table(events, total))


def _event_table(events: list[ConnectionEvent], total: int) -> Table:
    table = Table(
        Column("ID", no_wrap=True),
        Column("Time (UTC)", no_wrap=True),
        "Result",
        "Reason",
        "Certificate ID",
        Column("Device", no_wrap=True),
        Column("Peer", no_wrap=True),
        Column("Fingerprint", no_wrap=True),
        caption=f"{len(events)} of {total} event(s)",
    )
    for event in events:
        peer = event.peer
        if event.other_peer:
            peer = f"{peer} and {event.other_peer}"
        table.add_row(
            str(event.id),
            _format_second(event.created_at),
            event.result,
            event.reason or "-",
            event.certificate_id or "-",
            event.device_id or "-",
            peer,
            short_fingerprint(event.fingerprint) if event.fingerprint else "-",
        )
    return table


def _clone_table(suspects: list[CloneSuspect]) -> Table:
    table = Table(
        "Certificate ID",
        Column("Device", no_wrap=True),
        "Addresses",
        Column("Detected (UTC)", no_wrap=True),
        caption=f"{len(suspects)} suspected clone(s)",
    )
    for suspect in suspects:
        table.add_row(
            suspect.certificate_id,
            suspect.device_id or "-",
            ", ".join(suspect.addresses),
            _format_second(suspect.detected_at),
        )
    return table


def _format_second(value: dt.datetime) -> str:
    # To the second: handshakes of one device are often a minute apart.
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
