"""Firmware artifacts: the images that OTA releases send to devices.

An artifact is one package (such as ``main``) at one version, unique in
its project. The server computes its size and SHA-256 at upload, and the
manifest that devices read carries both, so a device can check the image
it downloaded (Golioth's firmware SDK compares the SHA-256).

Storage: the bytes are cut into :data:`CHUNK_BYTES` rows. A device
downloads an image in blocks of at most 1024 bytes, one request each, so
reading the whole multi-megabyte image per block would move gigabytes
for one download. Reading one chunk row per block costs at most 64 KiB,
on SQLite and PostgreSQL alike, and the gateway keeps a few recent
chunks in memory so that consecutive blocks mostly skip the database.
A file store would save the database the bytes, but every Fleetgate
process sharing one PostgreSQL would then need the same files.

Package and version names are at most 32 characters, the default
buffer sizes of the SDK (``CONFIG_GOLIOTH_OTA_MAX_PACKAGE_NAME_LEN`` and
``CONFIG_GOLIOTH_OTA_MAX_VERSION_LEN``): a device built with the
defaults cannot decode a longer name in its manifest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetgate.config import MAX_ARTIFACT_BYTES
from fleetgate.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, Reason
from fleetgate.store import audit
from fleetgate.store.database import Database
from fleetgate.store.models import (
    OtaArtifact,
    OtaArtifactChunk,
    OtaRelease,
    OtaReleaseArtifact,
)
from fleetgate.store.projects import require_project

CHUNK_BYTES = 64 * 1024
MAX_NAME_LENGTH = 32
DEFAULT_BOOTLOADER = "mcuboot"
# "@" separates package and version in the download path, and "/"
# separates path segments, so neither may appear in a name.
_PACKAGE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# The SDK stores the bootloader name in 7 characters and a terminator.
_BOOTLOADER_PATTERN = re.compile(r"[a-z0-9_-]{1,7}")


@dataclasses.dataclass(frozen=True)
class ArtifactRecord:
    """An artifact as stored, without its bytes."""

    id: str
    project_id: str
    package: str
    version: str
    bootloader: str
    size: int
    sha256: str
    chunk_size: int
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: OtaArtifact) -> ArtifactRecord:
        """Copy an artifact row into a record that outlives its session."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            package=row.package,
            version=row.version,
            bootloader=row.bootloader,
            size=row.size,
            sha256=row.sha256,
            chunk_size=row.chunk_size,
            created_at=row.created_at,
        )

    @property
    def uri(self) -> str:
        """The path a device downloads the artifact from."""
        return f"/.u/c/{self.package}@{self.version}"


def validate_package(package: str) -> str:
    """Return ``package`` when it is a valid package name; raise InvalidInput."""
    if len(package) > MAX_NAME_LENGTH or not _PACKAGE_PATTERN.fullmatch(package):
        raise InvalidInput(
            f"invalid package name {package!r}: use 1 to {MAX_NAME_LENGTH} "
            "letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return package


def validate_version(version: str) -> str:
    """Return ``version`` when it is a valid version; raise InvalidInput."""
    if len(version) > MAX_NAME_LENGTH or not _VERSION_PATTERN.fullmatch(version):
        raise InvalidInput(
            f"invalid version {version!r}: use 1 to {MAX_NAME_LENGTH} letters, "
            "digits, '.', '_', '+' or '-', starting with a letter or digit"
        )
    return version


def upload_artifact(
    db: Database,
    project_id: str,
    package: str,
    version: str,
    content: bytes,
    *,
    bootloader: str = DEFAULT_BOOTLOADER,
    max_bytes: int = MAX_ARTIFACT_BYTES,
    actor: str | None = None,
) -> ArtifactRecord:
    """Store a new artifact; raises Conflict when the version exists."""
    validate_package(package)
    validate_version(version)
    if not _BOOTLOADER_PATTERN.fullmatch(bootloader):
        raise InvalidInput(
            f"invalid bootloader {bootloader!r}: use 1 to 7 lowercase letters, "
            "digits, '_' or '-', such as 'mcuboot'"
        )
    if not content:
        raise InvalidInput(f"cannot store artifact {package}@{version}: it is empty")
    if len(content) > max_bytes:
        raise PayloadTooLarge(
            f"cannot store artifact {package}@{version}: its {len(content)} "
            f"bytes exceed the maximum of {max_bytes}"
        )

    row = OtaArtifact(
        project_id=project_id,
        package=package,
        version=version,
        bootloader=bootloader,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        chunk_size=CHUNK_BYTES,
    )
    try:
        with db.session() as session:
            require_project(session, project_id)
            session.add(row)
            session.flush()
            for index, start in enumerate(range(0, len(content), CHUNK_BYTES)):
                chunk = content[start : start + CHUNK_BYTES]
                session.add(
                    OtaArtifactChunk(artifact_id=row.id, index=index, content=chunk)
                )
            if actor is not None:
                audit.record(
                    session,
                    actor=actor,
                    action="artifact.upload",
                    project_id=project_id,
                    target_type="artifact",
                    target_id=row.id,
                    details={
                        "package": package,
                        "version": version,
                        "size": row.size,
                        "sha256": row.sha256,
                    },
                )
            record = ArtifactRecord.from_row(row)
    except IntegrityError as exc:
        raise Conflict(
            f"cannot store artifact {package}@{version}: project {project_id!r} "
            "already has this package version, so upload another version"
        ) from exc
    return record


def list_artifacts(
    db: Database, project_id: str, *, package: str | None = None
) -> list[ArtifactRecord]:
    """Return a project's artifacts by package, newest first within one."""
    query = select(OtaArtifact).where(OtaArtifact.project_id == project_id)
    if package is not None:
        query = query.where(OtaArtifact.package == package)
    with db.session(read_only=True) as session:
        require_project(session, project_id)
        rows = session.scalars(
            query.order_by(OtaArtifact.package, OtaArtifact.created_at.desc())
        )
        return [ArtifactRecord.from_row(row) for row in rows]


def get_artifact(db: Database, project_id: str, artifact_id: str) -> ArtifactRecord:
    """Return one artifact; raises NotFound for another project's."""
    with db.session(read_only=True) as session:
        return ArtifactRecord.from_row(
            require_artifact(session, project_id, artifact_id)
        )


def find_artifact(
    db: Database, project_id: str, package: str, version: str
) -> ArtifactRecord:
    """Return the artifact of ``package`` at ``version``, or raise NotFound."""
    with db.session(read_only=True) as session:
        row = session.scalar(
            select(OtaArtifact).where(
                OtaArtifact.project_id == project_id,
                OtaArtifact.package == package,
                OtaArtifact.version == version,
            )
        )
        if row is None:
            raise NotFound(
                f"cannot find artifact {package}@{version} in project {project_id!r}"
            )
        return ArtifactRecord.from_row(row)


def read_chunk(db: Database, artifact_id: str, index: int) -> bytes:
    """Return chunk ``index`` of an artifact, or raise NotFound."""
    with db.session(read_only=True) as session:
        content = session.scalar(
            select(OtaArtifactChunk.content).where(
                OtaArtifactChunk.artifact_id == artifact_id,
                OtaArtifactChunk.index == index,
            )
        )
    if content is None:
        raise NotFound(f"cannot find chunk {index} of artifact {artifact_id}")
    return bytes(content)


def read_content(db: Database, project_id: str, artifact_id: str) -> bytes:
    """Return an artifact's whole image, joined from its chunks."""
    with db.session(read_only=True) as session:
        require_artifact(session, project_id, artifact_id)
        chunks = session.scalars(
            select(OtaArtifactChunk.content)
            .where(OtaArtifactChunk.artifact_id == artifact_id)
            .order_by(OtaArtifactChunk.index)
        )
        return b"".join(bytes(chunk) for chunk in chunks)


def delete_artifact(
    db: Database, project_id: str, artifact_id: str, *, actor: str | None = None
) -> None:
    """Delete an artifact; raises Conflict while a release contains it."""
    with db.session() as session:
        row = require_artifact(session, project_id, artifact_id)
        releases = list(
            session.scalars(
                select(OtaRelease.name)
                .join(
                    OtaReleaseArtifact, OtaReleaseArtifact.release_id == OtaRelease.id
                )
                .where(OtaReleaseArtifact.artifact_id == artifact_id)
                .order_by(OtaRelease.name)
            )
        )
        if releases:
            raise Conflict(
                f"cannot delete artifact {row.package}@{row.version}: releases "
                f"{', '.join(repr(name) for name in releases)} contain it, so "
                "delete those releases first",
                reason=Reason.ARTIFACT_IN_USE,
            )
        if actor is not None:
            audit.record(
                session,
                actor=actor,
                action="artifact.delete",
                project_id=project_id,
                target_type="artifact",
                target_id=artifact_id,
                details={"package": row.package, "version": row.version},
            )
        session.delete(row)


def require_artifact(
    session: Session, project_id: str, artifact_id: str
) -> OtaArtifact:
    """Load an artifact row in ``session``, or raise NotFound."""
    row = session.get(OtaArtifact, artifact_id)
    if row is None or row.project_id != project_id:
        raise NotFound(
            f"cannot find artifact {artifact_id!r} in project {project_id!r}"
        )
    return row
