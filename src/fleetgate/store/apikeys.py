"""Management API keys: issue, list, revoke and authenticate.

A key is ``fgk_`` followed by 43 URL-safe base64 characters that encode
32 random bytes. A project key reaches one project. An admin key (no
project) reaches every project and may create projects. The key itself
is shown once, when it is issued. Only its SHA-256 is stored.

A single fast hash is enough here. Slow password hashes (bcrypt, scrypt,
Argon2) make guessing a low-entropy secret expensive, but a 256-bit
random key cannot be guessed, so slowing the hash would only slow every
API request.

A request's key is looked up by its first 12 characters, the prefix,
which is stored in clear and shown in listings. The hash of every
candidate row is then compared with :func:`hmac.compare_digest`, which
takes the same time however much of the hash matches.

``last_used_at`` is written at most once a minute per key, so that
read-only API traffic does not take the database's write lock on every
request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy import ColumnElement, or_, select, text, update
from sqlalchemy.orm import Session

from fleetgate.errors import InvalidInput, NotFound, Reason, Unauthenticated
from fleetgate.store import audit
from fleetgate.store.database import Database
from fleetgate.store.models import ApiKey, utcnow
from fleetgate.store.projects import require_project

KEY_PREFIX = "fgk_"
SECRET_BYTES = 32
# "fgk_" plus 8 random characters: 48 random bits, so rows rarely share
# a prefix, and showing it reveals nothing useful about the rest.
PREFIX_LENGTH = 12
KEY_LENGTH = len(KEY_PREFIX) + 43
MAX_NAME_LENGTH = 200
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)

# Key of the PostgreSQL advisory lock taken while checking for an admin
# key, so two servers starting at once do not both create one.
ADMIN_KEY_LOCK_KEY = 0x666C_6774_6164_6D6E

DEFAULT_ADMIN_KEY_NAME = "initial admin key"


@dataclasses.dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as stored, without its secret."""

    id: str
    project_id: str | None
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: ApiKey) -> ApiKeyRecord:
        """Copy an API key row into a record that outlives its session."""
        return cls(
            id=row.id,
            project_id=row.project_id,
            name=row.name,
            prefix=row.prefix,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )

    @property
    def is_admin(self) -> bool:
        """Whether the key reaches every project."""
        return self.project_id is None


@dataclasses.dataclass(frozen=True)
class IssuedApiKey:
    """A key just created: its record and the secret, shown only this once."""

    record: ApiKeyRecord
    secret: str = dataclasses.field(repr=False)


def create_api_key(
    db: Database,
    project_id: str | None,
    *,
    name: str | None = None,
    actor: str,
) -> IssuedApiKey:
    """Issue a key for one project, or an admin key when ``project_id`` is None."""
    key_name = _validate_name(name or project_id or "admin")

    with db.session() as session:
        if project_id is not None:
            require_project(session, project_id)
        return _issue(session, project_id, key_name, actor)


def ensure_admin_key(db: Database, *, actor: str) -> IssuedApiKey | None:
    """Issue an admin key when no unrevoked one exists, else return None."""
    with db.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": ADMIN_KEY_LOCK_KEY},
            )
        existing = session.scalar(
            select(ApiKey.id)
            .where(ApiKey.project_id.is_(None), ApiKey.revoked_at.is_(None))
            .limit(1)
        )
        if existing is not None:
            return None
        return _issue(session, None, DEFAULT_ADMIN_KEY_NAME, actor)


def list_api_keys(db: Database, project_id: str | None) -> list[ApiKeyRecord]:
    """Return a project's keys, or the admin keys for None, oldest first."""
    with db.session(read_only=True) as session:
        scope: ColumnElement[bool]
        if project_id is None:
            scope = ApiKey.project_id.is_(None)
        else:
            require_project(session, project_id)
            scope = ApiKey.project_id == project_id
        rows = session.scalars(
            select(ApiKey).where(scope).order_by(ApiKey.created_at, ApiKey.id)
        )
        return [ApiKeyRecord.from_row(row) for row in rows]


def revoke_api_key(
    db: Database, project_id: str | None, key_id: str, *, actor: str
) -> ApiKeyRecord:
    """Revoke a key at once. Revoking a revoked key changes nothing."""
    with db.session() as session:
        query = select(ApiKey).where(ApiKey.id == key_id).with_for_update()
        if project_id is None:
            query = query.where(ApiKey.project_id.is_(None))
        else:
            query = query.where(ApiKey.project_id == project_id)
        row = session.scalar(query)
        if row is None:
            scope = "admin keys" if project_id is None else f"project {project_id!r}"
            raise NotFound(f"cannot find API key {key_id!r} in {scope}")

        if row.revoked_at is None:
            row.revoked_at = utcnow()
            audit.record(
                session,
                actor=actor,
                action="apikey.revoke",
                project_id=project_id,
                target_type="apikey",
                target_id=row.id,
                details={"name": row.name, "prefix": row.prefix},
            )
        return ApiKeyRecord.from_row(row)


def authenticate(
    db: Database, presented: str, *, now: dt.datetime | None = None
) -> ApiKeyRecord:
    """Find the key that ``presented`` matches and record its use, or raise."""
    invalid = Unauthenticated(
        "cannot authenticate: the API key is not valid", reason=Reason.INVALID_API_KEY
    )
    if len(presented) != KEY_LENGTH or not presented.startswith(KEY_PREFIX):
        raise invalid
    digest = hash_key(presented)

    with db.session(read_only=True) as session:
        candidates = session.scalars(
            select(ApiKey).where(ApiKey.prefix == presented[:PREFIX_LENGTH])
        ).all()
        matched: ApiKey | None = None
        for row in candidates:
            if hmac.compare_digest(row.secret_hash, digest):
                matched = row
        if matched is None:
            raise invalid
        key = ApiKeyRecord.from_row(matched)

    if key.revoked_at is not None:
        raise Unauthenticated(
            "cannot authenticate: the API key was revoked at "
            f"{key.revoked_at.isoformat()}; create a new one with "
            "'fleetgate apikey create'",
            reason=Reason.REVOKED_API_KEY,
        )
    _touch(db, key, now or utcnow())
    return key


def hash_key(key: str) -> str:
    """Return the lowercase hex SHA-256 under which a key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def _issue(
    session: Session, project_id: str | None, name: str, actor: str
) -> IssuedApiKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    row = ApiKey(
        project_id=project_id,
        name=name,
        prefix=secret[:PREFIX_LENGTH],
        secret_hash=hash_key(secret),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="apikey.create",
        project_id=project_id,
        target_type="apikey",
        target_id=row.id,
        details={"name": name, "prefix": row.prefix, "admin": project_id is None},
    )
    return IssuedApiKey(record=ApiKeyRecord.from_row(row), secret=secret)


def _touch(db: Database, key: ApiKeyRecord, now: dt.datetime) -> None:
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    stale = now - LAST_USED_RESOLUTION
    with db.session() as session:
        session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key.id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < stale),
            )
            .values(last_used_at=now)
        )


def _validate_name(name: str) -> str:
    if not name.strip():
        raise InvalidInput("cannot use an empty API key name")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"cannot use API key name of {len(name)} characters: "
            f"the maximum is {MAX_NAME_LENGTH}"
        )
    if any(not character.isprintable() for character in name):
        raise InvalidInput(
            f"cannot use API key name {name!r}: it contains control characters"
        )
    return name
