"""Manufacturing manifests: the certificate IDs a project expects to see.

A manifest is imported as CSV or JSON, in named batches. Each entry has
a certificate ID, its batch, and optionally the device's serial number
and a hardware ID. An import is all or nothing: when any row is invalid,
nothing is stored, and the error names every bad row (up to
``MAX_REPORTED_PROBLEMS``). A certificate ID belongs to at most one
batch of a project. Importing a batch again updates its entries and
adds new ones.

With the project flag ``require_manifest``, zero-touch provisioning
creates devices only for listed certificate IDs (see
:mod:`fleetgate.provisioning`). :func:`manifest_report` compares the
manifest with the devices that connected.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from fleetgate.errors import FleetgateError, InvalidInput, NotFound
from fleetgate.pki.identity import validate_certificate_id
from fleetgate.store import audit, connections
from fleetgate.store.database import Database
from fleetgate.store.models import Device, ManifestEntry, Project
from fleetgate.store.projects import require_project

# Entries of one import, and bad rows named in one error message.
MAX_ENTRIES = 100_000
MAX_REPORTED_PROBLEMS = 20
MAX_SERIAL_LENGTH = 128
MAX_HARDWARE_ID_LENGTH = 200
BATCH_GRAMMAR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
COLUMNS = ("certificate_id", "batch", "serial", "hardware_id")
# JSON entries may use the API's camelCase names as well.
_JSON_ALIASES = {"certificateId": "certificate_id", "hardwareId": "hardware_id"}


@dataclasses.dataclass(frozen=True)
class ManifestRow:
    """One validated entry, with where it was in the file (``line 3``)."""

    position: str
    certificate_id: str
    batch: str
    serial: str | None = None
    hardware_id: str | None = None


class ManifestInvalid(InvalidInput):
    """A manifest with bad rows; ``problems`` names each with its position."""

    def __init__(self, problems: Sequence[str], *, total: int) -> None:
        shown = list(problems[:MAX_REPORTED_PROBLEMS])
        more = len(problems) - len(shown)
        suffix = f"; and {more} more" if more else ""
        super().__init__(
            f"cannot import manifest: {len(problems)} of {total} rows are "
            f"invalid, so nothing was imported: {'; '.join(shown)}{suffix}"
        )
        self.problems = list(problems)


@dataclasses.dataclass(frozen=True)
class BatchSummary:
    """A batch of a project's manifest and how many entries it has."""

    batch: str
    entries: int
    imported_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class ManifestReport:
    """Devices and manifest entries that do not match each other."""

    # Certificate IDs of devices that connected but are in no batch.
    unlisted: list[str]
    # (batch, certificate ID) of entries no device has connected with.
    never_seen: list[tuple[str, str]]
    # Certificate IDs seen from two addresses at once, from the connection log.
    clone_suspects: list[connections.CloneSuspect]
    # The batch of each suspect's certificate ID that a batch lists.
    clone_batches: dict[str, str] = dataclasses.field(default_factory=dict)


def validate_batch(batch: str) -> str:
    """Return ``batch`` when it can name a batch, or raise InvalidInput."""
    if not BATCH_GRAMMAR.fullmatch(batch):
        raise InvalidInput(
            f"cannot use batch name {batch!r}: expected 1-128 ASCII letters, "
            "digits and ._:@+- starting with a letter or digit"
        )
    return batch


def parse_manifest(
    content: bytes, *, batch: str | None = None, json_format: bool | None = None
) -> list[ManifestRow]:
    """Parse a CSV or JSON manifest, or raise ManifestInvalid naming bad rows.

    ``batch`` fills empty batch cells, and a row naming another batch is
    invalid. ``json_format`` None guesses the format from the first
    character: ``[`` is JSON, anything else CSV with a header line.
    """
    if batch is not None:
        batch = validate_batch(batch)
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"cannot import manifest: it is not UTF-8 text (byte {exc.start})"
        ) from exc
    if json_format is None:
        json_format = text.lstrip().startswith("[")
    raw = _json_rows(text) if json_format else _csv_rows(text)
    if len(raw) > MAX_ENTRIES:
        raise InvalidInput(
            f"cannot import manifest of {len(raw)} rows: the maximum is "
            f"{MAX_ENTRIES}; split it into several imports"
        )
    if not raw:
        raise InvalidInput("cannot import manifest: it has no rows")

    rows: list[ManifestRow] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for position, fields in raw:
        try:
            row = _validate_row(position, fields, batch)
        except FleetgateError as exc:
            problems.append(f"{position}: {exc.message}")
            continue
        if row.certificate_id in seen:
            problems.append(
                f"{position}: certificate ID {row.certificate_id!r} is also on "
                f"{seen[row.certificate_id]}"
            )
            continue
        seen[row.certificate_id] = position
        rows.append(row)
    if problems:
        raise ManifestInvalid(problems, total=len(raw))
    return rows


def _csv_rows(text: str) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or ()]
    unknown = [name for name in header if name not in COLUMNS]
    if "certificate_id" not in header or unknown:
        raise InvalidInput(
            f"cannot import manifest: line 1 must be a header with the "
            f"columns certificate_id and optionally {', '.join(COLUMNS[1:])}; "
            f"it has {', '.join(header) or 'nothing'}"
        )
    reader.fieldnames = header
    rows = []
    for fields in reader:
        position = f"line {reader.line_num}"
        if None in fields:
            rows.append((position, {"": "more cells than the header has"}))
            continue
        if not any((value or "").strip() for value in fields.values()):
            continue
        rows.append((position, dict(fields)))
    return rows


def _json_rows(text: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"cannot import manifest: invalid JSON at line {exc.lineno} "
            f"column {exc.colno}: {exc.msg}"
        ) from exc
    if not isinstance(document, list):
        raise InvalidInput("cannot import manifest: expected a JSON list of objects")
    rows = []
    for index, item in enumerate(document, start=1):
        position = f"item {index}"
        if not isinstance(item, dict):
            rows.append((position, {"": "not a JSON object"}))
            continue
        rows.append(
            (
                position,
                {
                    _JSON_ALIASES.get(str(key), str(key)): value
                    for key, value in item.items()
                },
            )
        )
    return rows


def _validate_row(
    position: str, fields: dict[str, Any], batch: str | None
) -> ManifestRow:
    if "" in fields:
        raise InvalidInput(str(fields[""]))
    unknown = sorted(set(fields) - set(COLUMNS))
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}")
    certificate_id = _text(fields, "certificate_id")
    if certificate_id is None:
        raise InvalidInput("certificate_id is missing")
    validate_certificate_id(certificate_id)

    row_batch = _text(fields, "batch")
    if row_batch is None:
        if batch is None:
            raise InvalidInput("batch is missing; give it in the row or with --batch")
        row_batch = batch
    elif batch is not None and row_batch != batch:
        raise InvalidInput(f"batch {row_batch!r} differs from the import's {batch!r}")
    validate_batch(row_batch)

    return ManifestRow(
        position=position,
        certificate_id=certificate_id,
        batch=row_batch,
        serial=_bounded(fields, "serial", MAX_SERIAL_LENGTH),
        hardware_id=_bounded(fields, "hardware_id", MAX_HARDWARE_ID_LENGTH),
    )


def _text(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, not {type(value).__name__}")
    # Cells are kept exactly, since certificate IDs are matched exactly;
    # an empty cell counts as absent.
    return value or None


def _bounded(fields: dict[str, Any], name: str, maximum: int) -> str | None:
    value = _text(fields, name)
    if value is None:
        return None
    if len(value) > maximum or not value.isprintable():
        raise InvalidInput(f"{name} must be at most {maximum} printable characters")
    return value


def import_manifest(
    db: Database, project_id: str, rows: Sequence[ManifestRow], *, actor: str
) -> list[BatchSummary]:
    """Store validated rows all at once and return the batches they touched.

    Raises ManifestInvalid, storing nothing, when a certificate ID is
    already listed in another batch of the project. The import is
    audited once per batch.
    """
    by_id = {row.certificate_id: row for row in rows}
    with db.session() as session:
        require_project(session, project_id)
        existing = {
            entry.certificate_id: entry
            for entry in _entries_for(session, project_id, list(by_id))
        }
        problems = [
            f"{row.position}: certificate ID {row.certificate_id!r} is already "
            f"listed in batch {existing[row.certificate_id].batch!r}"
            for row in rows
            if row.certificate_id in existing
            and existing[row.certificate_id].batch != row.batch
        ]
        if problems:
            raise ManifestInvalid(problems, total=len(rows))

        for row in rows:
            entry = existing.get(row.certificate_id)
            if entry is None:
                entry = ManifestEntry(
                    project_id=project_id,
                    batch=row.batch,
                    certificate_id=row.certificate_id,
                )
                session.add(entry)
            entry.serial = row.serial
            entry.hardware_id = row.hardware_id
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.batch] = counts.get(row.batch, 0) + 1
        for batch, count in sorted(counts.items()):
            audit.record(
                session,
                actor=actor,
                action="manifest.import",
                project_id=project_id,
                target_type="manifest_batch",
                target_id=batch,
                details={"entries": count},
            )
        session.flush()
        return [
            summary
            for summary in _summaries(session, project_id)
            if summary.batch in counts
        ]


def _entries_for(
    session: Session, project_id: str, certificate_ids: list[str]
) -> list[ManifestEntry]:
    entries: list[ManifestEntry] = []
    # Bounded IN lists: SQLite allows 32766 parameters per statement.
    for start in range(0, len(certificate_ids), 1000):
        chunk = certificate_ids[start : start + 1000]
        entries.extend(
            session.scalars(
                select(ManifestEntry).where(
                    ManifestEntry.project_id == project_id,
                    ManifestEntry.certificate_id.in_(chunk),
                )
            )
        )
    return entries


def list_batches(db: Database, project_id: str) -> list[BatchSummary]:
    """Return the project's batches, ordered by name."""
    with db.session(read_only=True) as session:
        require_project(session, project_id)
        return _summaries(session, project_id)


def _summaries(session: Session, project_id: str) -> list[BatchSummary]:
    query = (
        select(
            ManifestEntry.batch,
            func.count(),
            func.min(ManifestEntry.created_at),
        )
        .where(ManifestEntry.project_id == project_id)
        .group_by(ManifestEntry.batch)
        .order_by(ManifestEntry.batch)
    )
    return [
        BatchSummary(batch=batch, entries=count, imported_at=_aware(imported_at))
        for batch, count, imported_at in session.execute(query)
    ]


def _aware(value: dt.datetime) -> dt.datetime:
    # An aggregate bypasses UtcDateTime, and SQLite returns naive values.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def batch_certificate_ids(session: Session, project_id: str, batch: str) -> list[str]:
    """Return the certificate IDs of one batch, or raise NotFound."""
    ids = list(
        session.scalars(
            select(ManifestEntry.certificate_id).where(
                ManifestEntry.project_id == project_id, ManifestEntry.batch == batch
            )
        )
    )
    if not ids:
        raise NotFound(
            f"cannot find manifest batch {batch!r} in project {project_id!r}"
        )
    return ids


def delete_batch(db: Database, project_id: str, batch: str, *, actor: str) -> int:
    """Delete a batch and return how many entries it had; audited."""
    with db.session() as session:
        require_project(session, project_id)
        count = len(batch_certificate_ids(session, project_id, batch))
        session.execute(
            delete(ManifestEntry).where(
                ManifestEntry.project_id == project_id, ManifestEntry.batch == batch
            )
        )
        audit.record(
            session,
            actor=actor,
            action="manifest.delete",
            project_id=project_id,
            target_type="manifest_batch",
            target_id=batch,
            details={"entries": count},
        )
    return count


def is_listed(session: Session, project_id: str, certificate_id: str) -> bool:
    """Tell whether any batch of the project lists ``certificate_id``."""
    query = select(ManifestEntry.id).where(
        ManifestEntry.project_id == project_id,
        ManifestEntry.certificate_id == certificate_id,
    )
    return session.scalar(query) is not None


def set_require_manifest(
    db: Database, project_id: str, required: bool, *, actor: str
) -> None:
    """Turn the project's manifest requirement on or off; audited."""
    with db.session() as session:
        project = require_project(session, project_id)
        project.require_manifest = required
        audit.record(
            session,
            actor=actor,
            action="project.update",
            project_id=project_id,
            target_type="project",
            target_id=project_id,
            details={"requireManifest": required},
        )


def require_manifest(db: Database, project_id: str) -> bool:
    """Tell whether the project creates devices only for listed certificate IDs."""
    with db.session(read_only=True) as session:
        return require_project(session, project_id).require_manifest


def manifest_report(db: Database, project_id: str) -> ManifestReport:
    """Compare the manifest with the devices that have connected.

    Also lists the clone suspects of the connection log, which the
    gateway records when one certificate ID has live sessions from two
    addresses.
    """
    listed = select(ManifestEntry.certificate_id).where(
        ManifestEntry.project_id == project_id
    )
    seen = select(Device.certificate_id).where(
        Device.project_id == project_id,
        Device.certificate_id.is_not(None),
        Device.last_seen_at.is_not(None),
    )
    with db.session(read_only=True) as session:
        if session.get(Project, project_id) is None:
            raise NotFound(f"cannot find project {project_id!r}")
        unlisted = session.scalars(
            seen.where(Device.certificate_id.not_in(listed)).order_by(
                Device.certificate_id
            )
        )
        never_seen = session.execute(
            select(ManifestEntry.batch, ManifestEntry.certificate_id)
            .where(
                ManifestEntry.project_id == project_id,
                ManifestEntry.certificate_id.not_in(seen),
            )
            .order_by(ManifestEntry.batch, ManifestEntry.certificate_id)
        )
        unlisted_ids = [str(certificate_id) for certificate_id in unlisted]
        never_seen_entries = [
            (batch, certificate_id) for batch, certificate_id in never_seen
        ]
        suspects = connections.clone_suspects(db, project_id)
        suspect_ids = sorted({suspect.certificate_id for suspect in suspects})
        clone_batches = {
            certificate_id: batch
            for batch, certificate_id in session.execute(
                select(ManifestEntry.batch, ManifestEntry.certificate_id).where(
                    ManifestEntry.project_id == project_id,
                    ManifestEntry.certificate_id.in_(suspect_ids),
                )
            )
        }
    return ManifestReport(
        unlisted=unlisted_ids,
        never_seen=never_seen_entries,
        clone_suspects=suspects,
        clone_batches=clone_batches,
    )
