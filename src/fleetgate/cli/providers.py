"""``fleetgate provider``: choose and check a project's PKI provider.

``set`` stores the provider and syncs its CA certificates into the
project at once. ``status`` checks the provider now and shows the
result. ``sync`` registers new CA certificates and disables withdrawn
ones, as ``fleetgate serve`` also does every five minutes.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

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
    short_fingerprint,
)
from fleetgate.config import Settings
from fleetgate.errors import InvalidInput
from fleetgate.pki import issue, tools
from fleetgate.providers import credentials
from fleetgate.providers.aws_pca import AwsPcaProvider
from fleetgate.providers.base import PkiProvider, ProviderState
from fleetgate.providers.local import LocalProvider, generate_ca
from fleetgate.providers.offline import OfflineProvider
from fleetgate.providers.sync import (
    SyncResult,
    local_provider,
    provider_for,
    set_project_provider,
    sync_project,
)
from fleetgate.store import pki_providers
from fleetgate.store.audit import CLI_ACTOR
from fleetgate.store.projects import get_project

app = typer.Typer(
    help="Choose and check a project's PKI provider.", no_args_is_help=True
)


class KindChoice(enum.StrEnum):
    """Values of the KIND argument."""

    OFFLINE = "offline"
    LOCAL = "local"
    AWS_PCA = "aws-pca"


@app.command("set")
def set_(
    project_id: ProjectOption,
    kind: Annotated[
        KindChoice,
        typer.Argument(metavar="KIND", help="offline, local or aws-pca."),
    ],
    ca_key: Annotated[
        Path | None,
        typer.Option(help="local: PEM private key of the issuing CA (mode 0600)."),
    ] = None,
    ca_cert: Annotated[
        Path | None, typer.Option(help="local: PEM certificate of the issuing CA.")
    ] = None,
    generate: Annotated[
        bool,
        typer.Option(
            "--generate",
            help="local: make a new root CA in the data folder instead of "
            "--ca-key and --ca-cert.",
        ),
    ] = False,
    region: Annotated[
        str | None, typer.Option(help="aws-pca: AWS region, such as eu-west-1.")
    ] = None,
    ca_arn: Annotated[
        str | None, typer.Option(help="aws-pca: ARN of the CA that issues.")
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(help="aws-pca: endpoint URL instead of AWS's own."),
    ] = None,
    access_key_id: Annotated[
        str | None,
        typer.Option(
            help="aws-pca: access key ID to store in a file of mode 0600 "
            "(default: boto3's environment and profile chain)."
        ),
    ] = None,
    secret_access_key: Annotated[
        str | None,
        typer.Option(
            help="aws-pca: secret of --access-key-id; prompted for when "
            "missing, which keeps it out of the shell history.",
        ),
    ] = None,
    days: Annotated[
        int,
        typer.Option(
            min=1, max=tools.MAX_DAYS, help="Validity of issued certificates, in days."
        ),
    ] = issue.DEFAULT_DAYS,
    max_rotations_per_hour: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=pki_providers.MAX_ROTATIONS_PER_HOUR,
            help="Certificates a device may get per hour (default: 10, or "
            "the current value).",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Set a project's PKI provider and sync its CA certificates."""
    settings = Settings.from_options(data_dir, database_url)
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        get_project(db, project_id)
        if kind is KindChoice.LOCAL:
            provider: PkiProvider = _local(
                settings, project_id, ca_key, ca_cert, generate=generate, days=days
            )
        elif kind is KindChoice.AWS_PCA:
            provider = _aws(
                settings,
                project_id,
                region=region,
                ca_arn=ca_arn,
                endpoint_url=endpoint_url,
                access_key_id=access_key_id,
                secret_access_key=secret_access_key,
                days=days,
            )
        else:
            provider = OfflineProvider()

        set_project_provider(
            db,
            project_id,
            provider,
            max_rotations_per_hour=max_rotations_per_hour,
            actor=CLI_ACTOR,
        )
        print_message(f"Provider of project {project_id} set to {kind.value}")
        if kind is not KindChoice.OFFLINE:
            _report(sync_project(db, project_id, actor=CLI_ACTOR))


@app.command("status")
def status(
    project_id: ProjectOption,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Check a project's PKI provider now and show its configuration."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        health = provider_for(db, project_id).status()
        pki_providers.record_provider_status(
            db,
            project_id,
            status=health.state,
            error=health.error,
            ca_count=health.ca_count,
        )
        config = pki_providers.get_provider_config(db, project_id)

    table = Table("Field", "Value", show_header=False)
    table.add_row("Project", config.project_id)
    table.add_row("Kind", config.kind)
    table.add_row("Status", str(health.state))
    table.add_row("CA certificates", str(health.ca_count))
    table.add_row("Last sync (UTC)", format_time(config.last_sync_at))
    table.add_row("Rotations per hour", str(config.max_rotations_per_hour))
    for name, value in sorted(config.settings.items()):
        table.add_row(escape(name), "-" if value is None else escape(str(value)))
    if health.error:
        table.add_row("Error", f"[red]{escape(health.error)}[/]")
    print_table(table)
    if health.state is ProviderState.ERROR:
        raise typer.Exit(1)


@app.command("sync")
def sync(
    project_id: ProjectOption,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Register the provider's CA certificates and disable withdrawn ones."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        _report(sync_project(db, project_id, actor=CLI_ACTOR))


def _report(result: SyncResult) -> None:
    if result.kind == "offline":
        print_message(
            f"Project {result.project_id} uses the offline provider: nothing to sync"
        )
        return
    print_message(
        f"Synced project {result.project_id} with {result.kind}: "
        f"{result.ca_count} CA certificate(s), {len(result.added)} added, "
        f"{len(result.disabled)} disabled"
    )
    for digest in result.added:
        print_message(f"  added     {short_fingerprint(digest)}")
    for digest in result.disabled:
        print_message(f"  disabled  {short_fingerprint(digest)}")
    for digest in result.skipped:
        error_console.print(
            f"[yellow]warning:[/] CA {short_fingerprint(digest)} was not "
            "registered because the policy rejects it; see the log",
            soft_wrap=True,
        )


def _local(
    settings: Settings,
    project_id: str,
    ca_key: Path | None,
    ca_cert: Path | None,
    *,
    generate: bool,
    days: int,
) -> LocalProvider:
    if generate:
        if ca_key is not None or ca_cert is not None:
            raise InvalidInput(
                "cannot set local provider: give either --generate or "
                "--ca-key and --ca-cert, not both"
            )
        ca_key, ca_cert = generate_ca(settings.data_dir / "local-ca", project_id)
        print_message(f"Generated CA key {ca_key} (mode 0600) and {ca_cert}")
    if ca_key is None or ca_cert is None:
        raise InvalidInput(
            "cannot set local provider: give --ca-key and --ca-cert, or --generate"
        )
    return local_provider(ca_key, ca_cert, days=days)


def _aws(
    settings: Settings,
    project_id: str,
    *,
    region: str | None,
    ca_arn: str | None,
    endpoint_url: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    days: int,
) -> AwsPcaProvider:
    if not region or not ca_arn:
        raise InvalidInput("cannot set aws-pca provider: give --region and --ca-arn")
    key_file = None
    if access_key_id is not None:
        if secret_access_key is None:
            secret_access_key = typer.prompt("Secret access key", hide_input=True)
        key_file = credentials.credentials_path(settings.data_dir, project_id)
        try:
            credentials.write_access_key(
                key_file, credentials.AwsAccessKey(access_key_id, secret_access_key)
            )
        except OSError as exc:
            raise InvalidInput(
                f"cannot write AWS credentials file {key_file}: {exc.strerror}"
            ) from exc
        print_message(f"Stored the access key in {key_file} (mode 0600)")
    elif secret_access_key is not None:
        raise InvalidInput(
            "cannot set aws-pca provider: --secret-access-key needs --access-key-id"
        )
    return AwsPcaProvider(
        region=region,
        ca_arn=ca_arn,
        endpoint_url=endpoint_url,
        credentials_file=key_file,
        days=days,
    )
