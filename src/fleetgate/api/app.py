"""The FastAPI application of the management API.

:func:`create_app` builds an app around a :class:`Database` that it does
not own: ``fleetgate serve`` opens the database once, shares it with the
device gateway, and closes it after both have stopped. Routes that touch
the database are plain functions, which FastAPI runs in its thread pool,
or coroutines that hand the store call to :func:`asyncio.to_thread`, so
the event loop that also serves DTLS never waits on the database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cryptography import x509
from fastapi import FastAPI

from fleetgate.api import console
from fleetgate.api.context import (
    ApiContext,
    PskChanged,
    RpcCaller,
    SessionCloser,
    TrustChanged,
)
from fleetgate.api.docs import install_docs
from fleetgate.api.errors import GuardMiddleware, install_error_handlers
from fleetgate.api.routes import (
    artifacts,
    audit,
    certificates,
    connections,
    credentials,
    devices,
    explain,
    forecast,
    manifests,
    metrics,
    pki,
    projects,
    quarantines,
    releases,
    rpc,
    server_ca,
    settings,
    state,
    timeline,
)
from fleetgate.config import MAX_ARTIFACT_BYTES
from fleetgate.store.database import Database
from fleetgate.store.sealing import KeyEncryptionKey

DESCRIPTION = """\
Manage projects, CA certificates, devices and LightDB State, and read
the logs and LightDB Stream records that devices post.

Send an API key from `fleetgate apikey create` in the `x-api-key`
header, or as `Authorization: Bearer <key>`. Lists return
`{"list": [...], "page": N, "perPage": N, "total": N}` with pages
counted from 0, single items `{"data": {...}}`, and errors
`{"code": "<reason>", "message": "..."}`.
"""


def create_app(
    db: Database,
    *,
    trust_changed: TrustChanged | None = None,
    rpc_call: RpcCaller | None = None,
    close_sessions: SessionCloser | None = None,
    server_chain: Sequence[x509.Certificate] = (),
    max_artifact_bytes: int = MAX_ARTIFACT_BYTES,
    psk_key: KeyEncryptionKey | None = None,
    psk_changed: PskChanged | None = None,
) -> FastAPI:
    """Build the management API around an open database.

    ``trust_changed`` is called with a project ID after its CA
    certificates change, so the gateway can drop its cached anchors.
    ``rpc_call`` sends calls to devices connected to this process's gateway,
    and ``close_sessions`` closes their sessions (quarantines).
    ``server_chain`` is the server chain devices hold, for the forecast.
    ``max_artifact_bytes`` bounds firmware uploads. ``psk_key`` seals new
    PSK credentials, and ``psk_changed`` is called with a project ID after
    its PSK credentials change.
    """
    app = FastAPI(
        title="Fleetgate management API",
        description=DESCRIPTION,
        version="1",
        # install_docs() serves /docs with Swagger UI from this server.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    if trust_changed is None:
        app.state.fleetgate = ApiContext(
            db=db, rpc_call=rpc_call, max_artifact_bytes=max_artifact_bytes
        )
    else:
        app.state.fleetgate = ApiContext(
            db=db,
            trust_changed=trust_changed,
            rpc_call=rpc_call,
            max_artifact_bytes=max_artifact_bytes,
        )
    app.state.fleetgate = dataclasses.replace(app.state.fleetgate, psk_key=psk_key)
    if psk_changed is not None:
        app.state.fleetgate = dataclasses.replace(
            app.state.fleetgate, psk_changed=psk_changed
        )

    if close_sessions is not None:
        app.state.fleetgate = dataclasses.replace(
            app.state.fleetgate, close_sessions=close_sessions
        )
    app.state.fleetgate = dataclasses.replace(
        app.state.fleetgate, server_chain=tuple(server_chain)
    )

    for module in (
        projects,
        quarantines,
        certificates,
        credentials,
        devices,
        forecast,
        manifests,
        explain,
        state,
        settings,
        rpc,
        timeline,
        audit,
        connections,
        metrics,
        pki,
        artifacts,
        releases,
        server_ca,
    ):
        app.include_router(module.router)
    console.install_console(app)
    install_docs(app)
    install_error_handlers(app)
    app.add_middleware(
        GuardMiddleware,
        body_limits=[
            (artifacts.UPLOAD_PATH, artifacts.upload_body_limit(max_artifact_bytes))
        ],
        page_paths=console.PATHS,
    )
    return app
