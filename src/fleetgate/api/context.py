"""The request context of every route: the database and the gateway's hooks."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Annotated, Any

from cryptography import x509
from fastapi import Depends, Request

from fleetgate.config import MAX_ARTIFACT_BYTES
from fleetgate.store.database import Database
from fleetgate.store.sealing import KeyEncryptionKey

if TYPE_CHECKING:
    from fleetgate.errors import Reason
    from fleetgate.gateway.services.rpc import RpcResult

TrustChanged = Callable[[str], None]
# Called with a project ID after its PSK credentials change.
PskChanged = Callable[[str], None]
# Project ID, device ID, method, params and timeout in seconds.
RpcCaller = Callable[[str, str, str, list[Any], float], Awaitable["RpcResult"]]
# Project ID, device IDs and the reason to log; returns how many sessions
# were closed.
SessionCloser = Callable[[str, Collection[str], "Reason"], Awaitable[int]]


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
    # The gateway's RpcService.call when it runs in this process.
    rpc_call: RpcCaller | None = None
    # The gateway's close_device_sessions when it runs in this process.
    close_sessions: SessionCloser | None = None
    # The server certificate chain and root that devices hold, for the
    # expiry forecast.
    server_chain: tuple[x509.Certificate, ...] = ()
    # Seals the keys of new PSK credentials; None refuses to create them.
    psk_key: KeyEncryptionKey | None = None
    # The gateway's PskDirectory.reload_project when it runs in this process.
    psk_changed: PskChanged = _ignore_trust_change
    # Largest firmware artifact an upload may carry, in bytes.
    max_artifact_bytes: int = MAX_ARTIFACT_BYTES


def get_context(request: Request) -> ApiContext:
    """Return the context that :func:`fleetgate.api.app.create_app` stored."""
    context = request.app.state.fleetgate
    if not isinstance(context, ApiContext):
        raise RuntimeError("cannot serve request: the app has no ApiContext")
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]
