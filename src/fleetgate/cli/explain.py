"""``fleetgate pki explain``: what the gateway would do with a device chain.

Reads the certificate and its chain, checks them against the project's
registered CA certificates and policy, and prints the verdict, the path
with the anchor, every rule's outcome, the association rule that would
apply and what expires first. Nothing in the database changes.

Exit codes: 0 when the gateway would accept the device, and 3 when it
would reject the chain or the association (a disabled device, or a
certificate ID missing from a required manifest). The command exits 1
when it fails, as for an unreadable file or an unknown project, and 2
for a usage error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from fleetgate.cli.common import (
    DatabaseUrlOption,
    DataDirOption,
    ProjectOption,
    console,
    exit_on_error,
    format_time,
    opened_database,
    print_message,
    print_table,
    short_fingerprint,
)
from fleetgate.errors import InvalidInput
from fleetgate.explain import Explanation, explain_certificate
from fleetgate.pki.identity import load_certificates

# Exit status when the gateway would reject the device; 1 and 2 are
# taken by command errors and usage errors.
EXIT_REJECTED = 3

_RULE_NAMES = {
    "existing": "existing device, matched by certificate ID",
    "adopt": "adopts the device named after the certificate ID",
    "create": "creates a device named after the certificate ID",
    "create_with_suffix": "creates a device with a random suffix, the name is taken",
}


def explain(
    certificate: Annotated[
        Path,
        typer.Argument(
            metavar="CERT",
            help="PEM or DER device certificate; a PEM file may hold its chain too.",
        ),
    ],
    project_id: ProjectOption,
    chain: Annotated[
        Path | None,
        typer.Option("--chain", help="PEM file of the intermediates the device sends."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the API's JSON instead of tables.")
    ] = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Explain how the gateway would verify and associate a device certificate.

    Exits 0 when the device would be accepted, 3 when it would be rejected.
    """
    with exit_on_error():
        certificates = load_certificates(_read(certificate))
        if chain is not None:
            certificates += load_certificates(_read(chain))
        with opened_database(data_dir, database_url) as db:
            explanation = explain_certificate(db, project_id, certificates)

    if as_json:
        print_message(json.dumps(explanation.to_json(), indent=2))
    else:
        _print(explanation)
    if not explanation.accepted:
        raise typer.Exit(EXIT_REJECTED)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read certificate {path}: {exc.strerror}") from exc


def _print(explanation: Explanation) -> None:
    verdict = (
        "[green]accepted[/]"
        if explanation.accepted
        else f"[red]rejected[/] ({explanation.reason})"
    )
    print_message(
        f"Certificate ID {explanation.certificate_id or '-'} in project "
        f"{explanation.project_id}"
    )
    console.print(f"Verdict: {verdict}: {escape(explanation.message)}", soft_wrap=True)
    if explanation.anchor is not None:
        print_message(
            f"Anchor: {explanation.anchor.subject} at depth "
            f"{explanation.anchor.depth} ({explanation.anchor.fingerprint})"
        )

    chain = Table(
        "Depth",
        "Role",
        "Subject",
        Column("Fingerprint", no_wrap=True),
        Column("Expires (UTC)", no_wrap=True),
        title="Chain",
    )
    for member in explanation.chain:
        chain.add_row(
            str(member.depth),
            member.role,
            escape(member.subject),
            short_fingerprint(member.fingerprint),
            format_time(member.not_after),
        )
    print_table(chain)

    rules = Table("Depth", "Rule", "Result", "Reason", "Detail", title="Policy rules")
    for outcome in explanation.rules:
        rules.add_row(
            str(outcome.depth),
            outcome.rule,
            "[green]pass[/]" if outcome.passed else "[red]fail[/]",
            str(outcome.reason or ""),
            escape(outcome.detail),
        )
    print_table(rules)

    first = explanation.first_expiry
    print_message(
        f"Expires first: {first.role} {first.subject} at "
        f"{format_time(first.not_after)} UTC"
    )
    preview = explanation.association
    if preview is None:
        print_message("Association: never reached, the chain is rejected")
        return
    summary = f"device {preview.device_name}"
    if preview.device_id is not None:
        summary += f" ({preview.device_id})"
    if preview.reason is not None:
        summary += f", rejected: {preview.reason}: {preview.detail}"
    print_message(f"Association: {_RULE_NAMES[preview.rule]}: {summary}")
