"""API key authentication and project scoping for every route.

A request sends its key in the ``x-api-key`` header, as Golioth's
management API expects, or as ``Authorization: Bearer <key>``. When both
are present, ``x-api-key`` wins. The outcomes:

- no key: 401 ``missing_api_key``;
- a key that matches none, or the wrong shape: 401 ``invalid_api_key``;
- a revoked key: 401 ``revoked_api_key``;
- a project key on another project's resources: 404, the same response
  as for a project that does not exist, so keys cannot probe for the
  IDs of other tenants;
- a project key on an admin-only route (creating a project): 403.

Rejections are logged at WARNING with the reason and the client
address, at most one line per :data:`REJECTION_LOG_INTERVAL` seconds
with a count of the lines suppressed. Keys are never logged, not even
their prefix. Accepted requests log the key ID at DEBUG.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from fleetgate.api.context import ContextDep
from fleetgate.errors import Forbidden, NotFound, Reason, Unauthenticated
from fleetgate.store import apikeys

log = logging.getLogger(__name__)

REJECTION_LOG_INTERVAL = 10.0

api_key_header = APIKeyHeader(
    name="x-api-key",
    auto_error=False,
    description="A key from 'fleetgate apikey create'.",
)
bearer_header = HTTPBearer(
    auto_error=False,
    description="The same key, sent as Authorization: Bearer <key>.",
)


@dataclasses.dataclass(frozen=True)
class Caller:
    """The API key that made a request, and the project it is limited to."""

    key_id: str
    project_id: str | None

    @property
    def is_admin(self) -> bool:
        """Whether the key reaches every project."""
        return self.project_id is None

    @property
    def actor(self) -> str:
        """The actor recorded in the audit log for this request."""
        return self.key_id

    def require_project(self, project_id: str) -> None:
        """Raise NotFound, as for a missing project, unless the key reaches it."""
        if self.project_id is not None and self.project_id != project_id:
            raise NotFound(f"cannot find project {project_id!r}")

    def require_admin(self, action: str) -> None:
        """Raise Forbidden unless the key is an admin key."""
        if not self.is_admin:
            raise Forbidden(
                f"cannot {action}: this needs an admin key, and key "
                f"{self.key_id} is limited to project {self.project_id!r}",
                reason=Reason.ADMIN_KEY_REQUIRED,
            )


class _RejectionLog:
    """Logs rejected requests at most once per interval, counting the rest."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last = -interval
        self._suppressed = 0
        self._lock = threading.Lock()

    def warn(self, reason: str, peer: str) -> None:
        """Log one rejection, or count it when the last line is recent."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self._interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._last = now
        log.warning(
            "api request rejected reason=%s peer=%s suppressed=%d",
            reason,
            peer,
            suppressed,
        )


_rejections = _RejectionLog(REJECTION_LOG_INTERVAL)


def authenticate(
    request: Request,
    context: ContextDep,
    api_key: Annotated[str | None, Security(api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_header)],
) -> Caller:
    """Return the caller of a request, or raise Unauthenticated."""
    presented = api_key or (bearer.credentials if bearer is not None else None)
    peer = request.client.host if request.client is not None else "-"
    if not presented:
        _rejections.warn(Reason.MISSING_API_KEY, peer)
        raise Unauthenticated(
            "cannot authenticate: missing API key; send it in the x-api-key "
            "header or as 'Authorization: Bearer <key>'",
            reason=Reason.MISSING_API_KEY,
        )

    try:
        key = apikeys.authenticate(context.db, presented)
    except Unauthenticated as exc:
        _rejections.warn(exc.reason, peer)
        raise
    log.debug("api request key=%s project=%s", key.id, key.project_id or "*")
    return Caller(key_id=key.id, project_id=key.project_id)


CallerDep = Annotated[Caller, Depends(authenticate)]


@dataclasses.dataclass(frozen=True)
class ProjectScope:
    """A project named in a request path that the caller's key reaches."""

    project_id: str
    caller: Caller


def project_scope(project_id: str, caller: CallerDep) -> ProjectScope:
    """Check that the key reaches the project in the path, before any lookup."""
    caller.require_project(project_id)
    return ProjectScope(project_id=project_id, caller=caller)


ScopeDep = Annotated[ProjectScope, Depends(project_scope)]
