"""``fleetgate ota``: firmware artifacts, releases and device firmware state.

Artifacts and releases are named by ID or, for convenience, by
``package@version`` and by release name. The command line writes to the
database directly. A rollout made here therefore reaches a device that
observes ``.u/desired`` on a running ``fleetgate serve`` only when the
device reads its manifest again or reconnects, while a rollout made
through the management API is notified at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
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
from fleetgate.config import MAX_ARTIFACT_BYTES
from fleetgate.errors import NotFound, PayloadTooLarge
from fleetgate.store import devices, ota_artifacts, ota_releases, ota_reports
from fleetgate.store.audit import CLI_ACTOR
from fleetgate.store.database import Database
from fleetgate.store.ota_artifacts import DEFAULT_BOOTLOADER, ArtifactRecord
from fleetgate.store.ota_releases import ReleaseRecord

app = typer.Typer(help="Manage firmware updates (OTA).", no_args_is_help=True)
artifact_app = typer.Typer(help="Upload and manage firmware artifacts.")
release_app = typer.Typer(help="Create, roll out and roll back releases.")
app.add_typer(artifact_app, name="artifact", no_args_is_help=True)
app.add_typer(release_app, name="release", no_args_is_help=True)

ArtifactArgument = Annotated[
    str,
    typer.Argument(
        metavar="ARTIFACT", help="Artifact ID, or package@version such as main@1.2.0."
    ),
]
ReleaseArgument = Annotated[
    str, typer.Argument(metavar="RELEASE", help="Release ID or name.")
]


@artifact_app.command("upload")
def artifact_upload(
    project_id: ProjectOption,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", exists=True, dir_okay=False, help="Firmware image."
        ),
    ],
    package: Annotated[str, typer.Option(help="Package name, such as main.")],
    version: Annotated[str, typer.Option(help="Version, such as 1.2.0.")],
    bootloader: Annotated[
        str, typer.Option(help="Bootloader name sent in the manifest.")
    ] = DEFAULT_BOOTLOADER,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Upload a firmware image; its size and SHA-256 are computed."""
    with exit_on_error():
        size = file.stat().st_size
        if size > MAX_ARTIFACT_BYTES:
            raise PayloadTooLarge(
                f"cannot upload {file}: its {size} bytes exceed the maximum "
                f"of {MAX_ARTIFACT_BYTES}"
            )
        content = file.read_bytes()
        with opened_database(data_dir, database_url) as db:
            record = ota_artifacts.upload_artifact(
                db,
                project_id,
                package,
                version,
                content,
                bootloader=bootloader,
                actor=CLI_ACTOR,
            )
    print_message(
        f"Uploaded artifact {record.id} {record.package}@{record.version} "
        f"({record.size} bytes, SHA-256 {record.sha256})"
    )


@artifact_app.command("list")
def artifact_list(
    project_id: ProjectOption,
    package: Annotated[
        str | None, typer.Option(help="Show only artifacts of this package.")
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List a project's firmware artifacts."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        records = ota_artifacts.list_artifacts(db, project_id, package=package)
    table = Table(
        Column("ID", no_wrap=True),
        "Package",
        "Version",
        Column("Size (bytes)", justify="right"),
        "SHA-256",
        Column("Uploaded (UTC)", no_wrap=True),
        caption=f"{len(records)} artifacts",
    )
    for record in records:
        table.add_row(
            record.id,
            record.package,
            record.version,
            str(record.size),
            short_fingerprint(record.sha256),
            format_time(record.created_at),
        )
    print_table(table)


@artifact_app.command("delete")
def artifact_delete(
    project_id: ProjectOption,
    artifact: ArtifactArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Delete an artifact that no release contains."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        record = _find_artifact(db, project_id, artifact)
        ota_artifacts.delete_artifact(db, project_id, record.id, actor=CLI_ACTOR)
    print_message(f"Deleted artifact {record.id} {record.package}@{record.version}")


@release_app.command("create")
def release_create(
    project_id: ProjectOption,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Release name.")],
    artifacts: Annotated[
        list[str],
        typer.Argument(
            metavar="ARTIFACT...",
            help="Artifacts, one per package, by ID or package@version.",
        ),
    ],
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create a release of artifacts; roll it out with release rollout."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        ids = [_find_artifact(db, project_id, item).id for item in artifacts]
        record = ota_releases.create_release(db, project_id, name, ids, actor=CLI_ACTOR)
    print_message(f"Created release {record.id} named {record.name}")


@release_app.command("rollout")
def release_rollout(
    project_id: ProjectOption,
    release: ReleaseArgument,
    all_devices: Annotated[
        bool, typer.Option("--all", help="Roll out to every device of the project.")
    ] = False,
    device: Annotated[
        list[str] | None,
        typer.Option(help="Device ID or name to roll out to; repeat for more."),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(help="Roll out to devices with this tag; repeat for more."),
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Roll a release out, replacing its earlier targets."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        record = _find_release(db, project_id, release)
        device_ids = [
            devices.find_device(db, project_id, item).id for item in device or []
        ]
        record = ota_releases.roll_out(
            db,
            project_id,
            record.id,
            all_devices=all_devices,
            device_ids=device_ids,
            tags=tag or [],
            actor=CLI_ACTOR,
        )
    print_message(
        f"Rolled out release {record.name} to {_targets(record)} "
        f"(sequence {record.sequence})"
    )


@release_app.command("rollback")
def release_rollback(
    project_id: ProjectOption,
    release: ReleaseArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Stop a release's rollout; its devices fall back to an earlier release."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        record = _find_release(db, project_id, release)
        record = ota_releases.roll_back(db, project_id, record.id, actor=CLI_ACTOR)
    print_message(f"Rolled back release {record.name} (sequence {record.sequence})")


@release_app.command("list")
def release_list(
    project_id: ProjectOption,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """List a project's releases, newest first."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        records = ota_releases.list_releases(db, project_id)
    table = Table(
        Column("ID", no_wrap=True),
        "Name",
        "Artifacts",
        "Rolled out",
        "Targets",
        Column("Sequence", justify="right"),
        Column("Changed (UTC)", no_wrap=True),
        caption=f"{len(records)} releases",
    )
    for record in records:
        table.add_row(
            record.id,
            record.name,
            ", ".join(f"{item.package}@{item.version}" for item in record.artifacts),
            "yes" if record.rolled_out else "no",
            _targets(record),
            str(record.sequence),
            format_time(record.updated_at),
        )
    print_table(table)


@app.command("status")
def status(
    project_id: ProjectOption,
    device: Annotated[str, typer.Argument(metavar="DEVICE", help="Device ID or name.")],
    history: Annotated[
        bool, typer.Option(help="List every report instead of the latest ones.")
    ] = False,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Show a device's desired firmware and its reported component state."""
    with exit_on_error(), opened_database(data_dir, database_url) as db:
        device_id = devices.find_device(db, project_id, device).id
        manifest = ota_releases.desired_manifest(db, project_id, device_id)
        if history:
            reports = ota_reports.report_history(
                db, project_id, device_id, per_page=ota_reports.MAX_PER_PAGE
            ).items
        else:
            reports = ota_reports.latest_reports(db, project_id, device_id)

    desired = ", ".join(f"{c.package}@{c.version}" for c in manifest.components)
    print_message(
        f"Desired firmware of {device_id}: {desired or 'none'} "
        f"(sequence {manifest.sequence})"
    )
    table = Table(
        "Package",
        "State",
        "Reason",
        "Current",
        "Target",
        Column("Reported (UTC)", no_wrap=True),
        caption=f"{len(reports)} reports",
    )
    for report in reports:
        table.add_row(
            report.package,
            report.state_name,
            report.reason_name,
            report.current_version or "-",
            report.target_version or "-",
            format_time(report.received_at),
        )
    print_table(table)


def _find_artifact(db: Database, project_id: str, name: str) -> ArtifactRecord:
    package, at, version = name.partition("@")
    if at:
        return ota_artifacts.find_artifact(db, project_id, package, version)
    return ota_artifacts.get_artifact(db, project_id, name)


def _find_release(db: Database, project_id: str, name: str) -> ReleaseRecord:
    try:
        return ota_releases.get_release(db, project_id, name)
    except NotFound:
        pass
    for record in ota_releases.list_releases(db, project_id):
        if record.name == name:
            return record
    raise NotFound(
        f"cannot find release {name!r} in project {project_id!r}: "
        "give its ID or name as release list shows it"
    )


def _targets(record: ReleaseRecord) -> str:
    if record.all_devices:
        return "all devices"
    parts = [f"device {item}" for item in record.device_ids]
    parts += [f"tag {item}" for item in record.tags]
    if not parts:
        return "-"
    return ", ".join(parts)
