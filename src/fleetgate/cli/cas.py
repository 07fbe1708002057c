"""``fleetgate ca``: register and manage a project's CA certificates.

Every enabled CA certificate of a project, root or intermediate, is a
trust anchor for the device certificates of that project.
"""

from __future__ import annotations

import enum
from pathlib import Path
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
    short_fingerprint,
)
from fleetgate.errors import InvalidInput, PayloadTooLarge
from fleetgate.store import certificates, revocation
from fleetgate.store.audit import CLI_ACTOR

app = typer.Typer(help="Register and manage CA certificates.", no_args_is_help=True)

CaIdArgument = Annotated[
    str, typer.Argument(metavar="CA_ID", help="ID of the CA certificate.")
]


class CertTypeChoice(enum.StrEnum):
    """Values of ``--type``."""

    ROOT = "root"
    INTERMEDIATE = "intermediate"


@app.command("upload")
def upload(
    project_id: ProjectOption,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="One CA certificate, PEM or DER.",
            exists=True,
            dir_okay=False,
        ),
    ],
    cert_type: Annotated[
        CertTypeChoice | None,
        typer.Option(
            "--type",
            show_default=False,
            help="Register as root or intermediate "
            "(default: root when self-signed, else intermediate).",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Register a CA certificate in a project."""
    with exit_on_error():
        encoded = _read_certificate_file(file)
        with opened_database(data_dir, database_url) as db:
            record = certificates.add_ca_certificate(
                db,
                project_id,
                encoded,
                cert_type=None if cert_type is None else cert_type.value,
                actor=CLI_ACTOR,
            )
    print_message(
        f"Added {record.cert_type} CA certificate {record.id} to project "
        f"{record.project_id}: {record.subject}, fingerprint {record.fingerprint}"
    )


def _read_certificate_file(file: Path) -> bytes:
    limit = certificates.MAX_FILE_BYTES
    # Reads one byte past the limit rather than the whole file, so a huge
    # file or a device such as /dev/zero costs no more than that.
    try:
        with file.open("rb") as stream:
            encoded = stream.read(limit + 1)
    except OSError as exc:
        raise InvalidInput(
            f"cannot read CA certificate {str(file)!r}: {exc.strerror}"
        ) from exc
    if len(encoded) > limit:
        raise PayloadTooLarge(
            f"cannot read CA certificate {str(file)!r}: it is larger than "
            f"{limit} bytes, so it is not one certificate; upload one PEM or "
            "DER certificate"
        )
    return encoded


@app.command("list")
def list_(
    project_id: ProjectOption,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List a project's CA certificates."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        rows = certificates.list_ca_certificates(db, project_id)

    table = Table(
        Column("ID", no_wrap=True),
        "Type",
        "Subject",
        Column("Fingerprint", no_wrap=True),
        Column("Not after (UTC)", no_wrap=True),
        "Enabled",
        "Source",
    )
    for ca in rows:
        table.add_row(
            ca.id,
            ca.cert_type,
            ca.subject,
            short_fingerprint(ca.fingerprint),
            format_time(ca.not_after),
            format_enabled(ca.enabled),
            ca.source,
        )
    print_table(table)


@app.command("disable")
def disable(
    project_id: ProjectOption,
    ca_id: CaIdArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Stop trusting a CA certificate without removing it."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        certificates.set_ca_certificate_enabled(
            db, project_id, ca_id, False, actor=CLI_ACTOR
        )
    print_message(f"Disabled CA certificate {ca_id}")


@app.command("enable")
def enable(
    project_id: ProjectOption,
    ca_id: CaIdArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Trust a disabled CA certificate again."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        certificates.set_ca_certificate_enabled(
            db, project_id, ca_id, True, actor=CLI_ACTOR
        )
    print_message(f"Enabled CA certificate {ca_id}")


@app.command("delete")
def delete(
    project_id: ProjectOption,
    ca_id: CaIdArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Remove a CA certificate from a project."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        certificates.delete_ca_certificate(db, project_id, ca_id, actor=CLI_ACTOR)
    print_message(f"Deleted CA certificate {ca_id}")


@app.command("crl")
def crl(
    project_id: ProjectOption,
    ca_id: CaIdArgument,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="The CRL that this CA certificate signed, PEM or DER.",
            exists=True,
            dir_okay=False,
        ),
    ],
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Load a CRL for a CA certificate, so that the devices it lists are rejected."""
    with exit_on_error():
        try:
            encoded = file.read_bytes()
        except OSError as exc:
            raise InvalidInput(
                f"cannot read CRL {str(file)!r}: {exc.strerror}"
            ) from exc
        with opened_database(data_dir, database_url) as db:
            record = revocation.load_revocation_list(
                db, project_id, ca_id, encoded, actor=CLI_ACTOR
            )

    print_message(
        f"Loaded CRL for CA certificate {ca_id}: {record.revoked_count} revoked "
        f"certificate(s), next update {format_time(record.next_update)} UTC"
    )
    if record.expired(record.loaded_at):
        typer.echo(
            "warning: the CRL's next update has passed. Its entries are still "
            "used, but load a newer CRL from the CA.",
            err=True,
        )
