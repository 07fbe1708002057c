"""OTA releases: sets of artifacts rolled out to devices.

A release holds at most one artifact per package. Rolling it out targets
every device of the project, or listed devices and the devices that carry
any of the listed tags. Rolling out again replaces the targets. Rolling
back stops the rollout, so its devices fall back to the previous release
that applies to them, or to an empty manifest.

A device's desired manifest is the rolled-out release that applies to it
with the highest sequence number. Every rollout and rollback takes the
project's next sequence number (one more than the highest of its
releases, under a lock of the project row), and the manifest carries the
highest sequence number of the releases that target the device, rolled
out or not, so that a rollback also increases it.

Every committed rollout, rollback and deletion is published to
:data:`fleetgate.store.changes.ota_changes`: per device for releases
targeted by device ID, and project-wide for those targeting every device
or tags.

Limitations: changing a device's tags changes which releases apply to it
but is not published, so an observing device learns of it at its next
read of the manifest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetgate.errors import Conflict, InvalidInput, NotFound
from fleetgate.store import audit
from fleetgate.store.changes import ota_changes
from fleetgate.store.database import Database
from fleetgate.store.devices import require_device
from fleetgate.store.models import (
    OtaArtifact,
    OtaRelease,
    OtaReleaseArtifact,
    OtaReleaseDevice,
    Project,
    utcnow,
)
from fleetgate.store.ota_artifacts import ArtifactRecord, require_artifact
from fleetgate.store.projects import require_project

MAX_NAME_LENGTH = 200
MAX_TARGETS = 10_000


@dataclasses.dataclass(frozen=True)
class ReleaseRecord:
    """A release, its artifacts by package and its rollout targets."""

    id: str
    project_id: str
    name: str
    artifacts: tuple[ArtifactRecord, ...]
    rolled_out: bool
    all_devices: bool
    device_ids: tuple[str, ...]
    tags: tuple[str, ...]
    sequence: int
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class DesiredManifest:
    """The components of a device's release, if any, and their sequence number."""

    sequence: int
    release_id: str | None
    components: tuple[ArtifactRecord, ...]

    @property
    def digest(self) -> str:
        """Lowercase hex SHA-256 over each component's package, version and hash."""
        lines = "".join(
            f"{item.package}@{item.version} {item.sha256}\n" for item in self.components
        )
        return hashlib.sha256(lines.encode()).hexdigest()


def create_release(
    db: Database,
    project_id: str,
    name: str,
    artifact_ids: Sequence[str],
    *,
    actor: str | None = None,
) -> ReleaseRecord:
    """Create a release of ``artifact_ids``, not rolled out yet."""
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"invalid release name {name!r}: use 1 to {MAX_NAME_LENGTH} "
            "characters, not only spaces"
        )
    if not artifact_ids:
        raise InvalidInput(
            f"cannot create release {name!r}: name at least one artifact"
        )
    try:
        with db.session() as session:
            require_project(session, project_id)
            artifacts = [require_artifact(session, project_id, i) for i in artifact_ids]
            packages: dict[str, OtaArtifact] = {}
            for artifact in artifacts:
                if artifact.package in packages:
                    raise InvalidInput(
                        f"cannot create release {name!r}: it names package "
                        f"{artifact.package!r} twice, and a release holds one "
                        "artifact per package"
                    )
                packages[artifact.package] = artifact
            now = utcnow()
            row = OtaRelease(
                project_id=project_id,
                name=name,
                rolled_out=False,
                all_devices=False,
                tags=[],
                sequence=0,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            for package, artifact in packages.items():
                session.add(
                    OtaReleaseArtifact(
                        release_id=row.id, package=package, artifact_id=artifact.id
                    )
                )
            _audit(session, actor, "release.create", row, {"name": name})
            session.flush()
            record = _record(session, row)
    except IntegrityError as exc:
        raise Conflict(
            f"cannot create release {name!r}: project {project_id!r} already "
            "has a release of this name"
        ) from exc
    return record


def list_releases(db: Database, project_id: str) -> list[ReleaseRecord]:
    """Return a project's releases, newest first."""
    with db.session(read_only=True) as session:
        require_project(session, project_id)
        rows = session.scalars(
            select(OtaRelease)
            .where(OtaRelease.project_id == project_id)
            .order_by(OtaRelease.created_at.desc(), OtaRelease.name)
        )
        return [_record(session, row) for row in rows]


def get_release(db: Database, project_id: str, release_id: str) -> ReleaseRecord:
    """Return one release; raises NotFound for another project's."""
    with db.session(read_only=True) as session:
        return _record(session, _release_row(session, project_id, release_id))


def roll_out(
    db: Database,
    project_id: str,
    release_id: str,
    *,
    all_devices: bool = False,
    device_ids: Sequence[str] = (),
    tags: Sequence[str] = (),
    actor: str | None = None,
) -> ReleaseRecord:
    """Roll a release out to its targets, replacing earlier targets."""
    if all_devices == bool(device_ids or tags):
        raise InvalidInput(
            "cannot roll out: target either every device or listed devices "
            "and tags, not both and not neither"
        )
    if len(device_ids) + len(tags) > MAX_TARGETS:
        raise InvalidInput(
            f"cannot roll out to {len(device_ids) + len(tags)} devices and tags: "
            f"the maximum is {MAX_TARGETS}"
        )
    with db.session() as session:
        _lock_project(session, project_id)
        row = _release_row(session, project_id, release_id)
        before = _targets(session, row)
        for device_id in device_ids:
            require_device(session, project_id, device_id)
        session.execute(
            delete(OtaReleaseDevice).where(OtaReleaseDevice.release_id == row.id)
        )
        for device_id in dict.fromkeys(device_ids):
            session.add(OtaReleaseDevice(release_id=row.id, device_id=device_id))
        row.all_devices = all_devices
        row.tags = sorted(set(tags))
        row.rolled_out = True
        row.sequence = _next_sequence(session, project_id)
        row.updated_at = utcnow()
        session.flush()
        after = _targets(session, row)
        _audit(
            session,
            actor,
            "release.rollout",
            row,
            {
                "allDevices": all_devices,
                "deviceIds": sorted(set(device_ids)),
                "tags": row.tags,
                "sequence": row.sequence,
            },
        )
        record = _record(session, row)
    _publish(project_id, [before, after])
    return record


def roll_back(
    db: Database, project_id: str, release_id: str, *, actor: str | None = None
) -> ReleaseRecord:
    """Stop a release's rollout; its devices fall back to an earlier release."""
    with db.session() as session:
        _lock_project(session, project_id)
        row = _release_row(session, project_id, release_id)
        if not row.rolled_out:
            raise Conflict(
                f"cannot roll back release {row.name!r}: it is not rolled out"
            )
        row.rolled_out = False
        row.sequence = _next_sequence(session, project_id)
        row.updated_at = utcnow()
        targets = _targets(session, row)
        _audit(session, actor, "release.rollback", row, {"sequence": row.sequence})
        session.flush()
        record = _record(session, row)
    _publish(project_id, [targets])
    return record


def delete_release(
    db: Database, project_id: str, release_id: str, *, actor: str | None = None
) -> None:
    """Delete a release that is not rolled out; its artifacts stay."""
    with db.session() as session:
        row = _release_row(session, project_id, release_id)
        if row.rolled_out:
            raise Conflict(
                f"cannot delete release {row.name!r}: it is rolled out, so "
                "roll it back first"
            )
        _audit(session, actor, "release.delete", row, {"name": row.name})
        session.delete(row)


def desired_manifest(db: Database, project_id: str, device_id: str) -> DesiredManifest:
    """Return the manifest of the latest rolled-out release that applies to a device.

    NOTE: deleting a rolled-back release can lower the sequence number a
    device receives, although its components stay the same.
    """
    with db.session(read_only=True) as session:
        device = require_device(session, project_id, device_id)
        listed = set(
            session.scalars(
                select(OtaReleaseDevice.release_id).where(
                    OtaReleaseDevice.device_id == device_id
                )
            )
        )
        device_tags = set(device.tags or ())
        releases = session.scalars(
            select(OtaRelease).where(
                OtaRelease.project_id == project_id, OtaRelease.sequence > 0
            )
        )
        applicable = [
            release
            for release in releases
            if release.all_devices
            or release.id in listed
            or device_tags.intersection(release.tags or ())
        ]
        sequence = max((release.sequence for release in applicable), default=0)
        live = [release for release in applicable if release.rolled_out]
        if not live:
            return DesiredManifest(sequence, None, ())
        chosen = max(live, key=lambda release: release.sequence)
        return DesiredManifest(
            sequence, chosen.id, tuple(_artifacts_of(session, chosen.id))
        )


def _record(session: Session, row: OtaRelease) -> ReleaseRecord:
    device_ids = session.scalars(
        select(OtaReleaseDevice.device_id)
        .where(OtaReleaseDevice.release_id == row.id)
        .order_by(OtaReleaseDevice.device_id)
    )
    return ReleaseRecord(
        id=row.id,
        project_id=row.project_id,
        name=row.name,
        artifacts=tuple(_artifacts_of(session, row.id)),
        rolled_out=row.rolled_out,
        all_devices=row.all_devices,
        device_ids=tuple(device_ids),
        tags=tuple(row.tags or ()),
        sequence=row.sequence,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _artifacts_of(session: Session, release_id: str) -> list[ArtifactRecord]:
    rows = session.scalars(
        select(OtaArtifact)
        .join(OtaReleaseArtifact, OtaReleaseArtifact.artifact_id == OtaArtifact.id)
        .where(OtaReleaseArtifact.release_id == release_id)
        .order_by(OtaArtifact.package)
    )
    return [ArtifactRecord.from_row(row) for row in rows]


def _targets(session: Session, row: OtaRelease) -> tuple[str, ...] | None:
    """Return the device IDs a release targets, or None for a project-wide one."""
    if row.all_devices or row.tags:
        return None
    return tuple(
        session.scalars(
            select(OtaReleaseDevice.device_id).where(
                OtaReleaseDevice.release_id == row.id
            )
        )
    )


def _publish(project_id: str, targets: Iterable[tuple[str, ...] | None]) -> None:
    devices: set[str] = set()
    for group in targets:
        if group is None:
            ota_changes.publish(project_id, ())
            return
        devices.update(group)
    for device_id in sorted(devices):
        ota_changes.publish(project_id, (device_id,))


def _next_sequence(session: Session, project_id: str) -> int:
    highest = session.scalar(
        select(func.max(OtaRelease.sequence)).where(OtaRelease.project_id == project_id)
    )
    return int(highest or 0) + 1


def _lock_project(session: Session, project_id: str) -> None:
    # Serialises sequence numbers on PostgreSQL; SQLite writers are
    # serialised already.
    query = select(Project.id).where(Project.id == project_id).with_for_update()
    if session.scalar(query) is None:
        raise NotFound(f"cannot find project {project_id!r}")


def _release_row(session: Session, project_id: str, release_id: str) -> OtaRelease:
    row = session.get(OtaRelease, release_id)
    if row is None or row.project_id != project_id:
        raise NotFound(f"cannot find release {release_id!r} in project {project_id!r}")
    return row


def _audit(
    session: Session,
    actor: str | None,
    action: str,
    row: OtaRelease,
    details: dict[str, object],
) -> None:
    if actor is None:
        return
    audit.record(
        session,
        actor=actor,
        action=action,
        project_id=row.project_id,
        target_type="release",
        target_id=row.id,
        details=details,
    )
