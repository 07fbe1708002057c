"""``fleetgate serve``: the device gateway in one process."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from fleetgate.cli.common import (
    DatabaseUrlOption,
    DataDirOption,
    error_console,
    exit_on_error,
)
from fleetgate.config import GatewaySettings, Settings
from fleetgate.gateway.server import Gateway
from fleetgate.gateway.server_identity import (
    ServerIdentity,
    ensure_development_identity,
)
from fleetgate.gateway.tls import ServerCredentials
from fleetgate.store.database import Database

log = logging.getLogger("fleetgate.serve")

HostnameOption = Annotated[
    list[str] | None,
    typer.Option(
        "--hostname",
        help="Extra DNS name or IP address for the development server "
        "certificate; repeatable.",
    ),
]
ServerCertOption = Annotated[
    Path | None,
    typer.Option(
        help="Your server certificate chain (PEM, leaf first), "
        "used instead of the development one.",
    ),
]


def serve(
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    host: Annotated[str, typer.Option(help="Address the device gateway binds.")] = "::",
    port: Annotated[
        int, typer.Option(help="UDP port of the device gateway (coaps); 0 picks one.")
    ] = 5684,
    hostname: HostnameOption = None,
    server_cert: ServerCertOption = None,
    server_key: Annotated[
        Path | None, typer.Option(help="Private key (PEM) of --server-cert.")
    ] = None,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds after which an idle DTLS session is closed.")
    ] = 300.0,
    max_sessions: Annotated[
        int, typer.Option(help="Maximum number of concurrent DTLS sessions.")
    ] = 10_000,
    log_level: Annotated[
        str, typer.Option(help="Logging level: DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    """Run the device gateway (CoAP over DTLS) until SIGINT or SIGTERM."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Migration progress is noise on every start; failures still surface.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = Settings.from_options(data_dir, database_url)
    if (server_cert is None) != (server_key is None):
        error_console.print(
            "[red]error:[/] cannot start: give both --server-cert and --server-key"
        )
        raise typer.Exit(2)

    with exit_on_error():
        if server_cert is not None and server_key is not None:
            credentials = ServerCredentials(server_cert, server_key)
            identity = ServerIdentity(credentials, None, generated=False)
        else:
            identity = ensure_development_identity(
                settings.server_pki_dir, tuple(hostname or ())
            )
        db = Database.open(settings.resolved_database_url)
        gateway_settings = GatewaySettings(
            host=host,
            port=port,
            idle_timeout=dt.timedelta(seconds=idle_timeout),
            max_sessions=max_sessions,
        )
        try:
            asyncio.run(_run(db, identity, gateway_settings))
        finally:
            db.dispose()


async def _run(
    db: Database, identity: ServerIdentity, settings: GatewaySettings
) -> None:
    gateway = Gateway(db, identity.credentials, settings)
    await gateway.start()
    bound_host, bound_port = gateway.address
    if identity.root_path is not None:
        _say(f"Devices must trust the server CA at {identity.root_path.resolve()}")
    _say(f"Device gateway ready on coaps://{_url_host(bound_host)}:{bound_port}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down")
    await gateway.stop()


def _say(text: str) -> None:
    error_console.print(text, soft_wrap=True, markup=False)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
