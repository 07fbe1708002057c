"""Web console sessions: open one with an API key, look it up, close it.

Signing in to the console checks an API key exactly as the management
API does (:func:`fleetgate.store.apikeys.authenticate`) and opens a
session that acts with that key's scope. The browser keeps only the
session token, 32 random bytes, in a cookie. The database keeps the
token's SHA-256, the key's ID, a CSRF token for the session's forms and
an expiry, so neither the API key nor the session token is stored.

A session ends at :data:`SESSION_LIFETIME` after sign-in, at sign-out,
or as soon as its API key is revoked or deleted: every lookup joins the
key and rejects a revoked one. Expired rows are removed whenever
someone signs in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets

from sqlalchemy import delete, select

from fleetgate.store import apikeys
from fleetgate.store.database import Database
from fleetgate.store.models import ApiKey, ConsoleSession, utcnow

SESSION_LIFETIME = dt.timedelta(hours=12)
TOKEN_BYTES = 32


@dataclasses.dataclass(frozen=True)
class ConsoleSessionRecord:
    """A live console session and the API key it acts as."""

    api_key_id: str
    # None for an admin key, which reaches every project.
    project_id: str | None
    csrf_token: str = dataclasses.field(repr=False)
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class OpenedSession:
    """A session just opened: its record and the token for the cookie."""

    record: ConsoleSessionRecord
    token: str = dataclasses.field(repr=False)


def open_session(
    db: Database, presented_key: str, *, now: dt.datetime | None = None
) -> OpenedSession:
    """Check an API key and open a session for it.

    Raises Unauthenticated, with the API's reasons, for a key that is
    missing, invalid or revoked.
    """
    now = now or utcnow()
    key = apikeys.authenticate(db, presented_key, now=now)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = ConsoleSession(
        token_hash=hash_token(token),
        api_key_id=key.id,
        csrf_token=secrets.token_urlsafe(TOKEN_BYTES),
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
    )

    with db.session() as session:
        session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
        session.add(row)
    record = ConsoleSessionRecord(
        api_key_id=key.id,
        project_id=key.project_id,
        csrf_token=row.csrf_token,
        expires_at=row.expires_at,
    )
    return OpenedSession(record=record, token=token)


def find_session(
    db: Database, token: str, *, now: dt.datetime | None = None
) -> ConsoleSessionRecord | None:
    """Return the live session of a token, or None when there is none.

    A token that was never issued, an expired session and one whose API
    key was revoked all return None, and the console shows its sign-in page.
    """
    if not token or len(token) > 2 * TOKEN_BYTES:
        return None
    now = now or utcnow()
    with db.session(read_only=True) as session:
        found = session.execute(
            select(ConsoleSession, ApiKey)
            .join(ApiKey, ApiKey.id == ConsoleSession.api_key_id)
            .where(ConsoleSession.token_hash == hash_token(token))
        ).one_or_none()
    if found is None:
        return None
    row, key = found
    if row.expires_at <= now or key.revoked_at is not None:
        return None
    return ConsoleSessionRecord(
        api_key_id=key.id,
        project_id=key.project_id,
        csrf_token=row.csrf_token,
        expires_at=row.expires_at,
    )


def close_session(db: Database, token: str) -> None:
    """End the session of a token; an unknown token changes nothing."""
    with db.session() as session:
        session.execute(
            delete(ConsoleSession).where(ConsoleSession.token_hash == hash_token(token))
        )


def hash_token(token: str) -> str:
    """Return the lowercase hex SHA-256 under which a session token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()
