"""The request context of every route: the database and the trust hook."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from fleetgate.store.database import Database

TrustChanged = Callable[[str], None]


def _ignore_trust_change(_project_id: str) -> None:
    """Default hook when no gateway shares the process."""


@dataclasses.dataclass(frozen=True)
class ApiContext:
    """The shared database, and a hook called when a project's CAs change.

    ``fleetgate serve`` passes the gateway's ``TrustCache.invalidate``
    as ``trust_changed``, so new handshakes see an uploaded, disabled
    or deleted CA certificate at once.
    """

    db: Database
    trust_changed: TrustChanged = _ignore_trust_change


def get_context(request: Request) -> ApiContext:
    """Return the context that :func:`fleetgate.api.app.create_app` stored."""
    context = request.app.state.fleetgate
    if not isinstance(context, ApiContext):
        raise RuntimeError("cannot serve request: the app has no ApiContext")
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]
