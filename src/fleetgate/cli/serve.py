"""``fleetgate serve``: the device gateway and the management API in one process.

Both run in one asyncio loop and share one :class:`Database`. The API
listens on 127.0.0.1:8080 unless ``--api-host``, ``--api-port`` or
``--no-api`` set otherwise. On the first start with the API, when no
unrevoked admin key exists, an admin key is created and printed once.
SIGINT or SIGTERM stops the API (open requests get a few seconds to
finish) and then the gateway.

Every start-up failure that an operator can cause (a port in use, a host
that does not resolve, unreadable or mismatched server credentials, a
data folder that cannot be created) ends with one ``error:`` line and
exit code 1. Options outside their range are usage errors (exit code 2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import errno
import logging
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from OpenSSL import SSL

from fleetgate.cli.common import (
    DatabaseUrlOption,
    DataDirOption,
    error_console,
    exit_on_error,
)
from fleetgate.config import (
    LOG_FORMAT_ENV,
    METRICS_WITHOUT_KEY_ENV,
    ApiSettings,
    ConnectionLogSettings,
    GatewaySettings,
    Settings,
)
from fleetgate.errors import StartupFailed
from fleetgate.gateway.server import Gateway, favour_event_loop
from fleetgate.gateway.server_identity import (
    ServerIdentity,
    ensure_development_identity,
    load_server_identity,
)
from fleetgate.gateway.workers import WorkerPool
from fleetgate.log_format import JsonFormatter, LogFormat, configure_logging
from fleetgate.store import apikeys
from fleetgate.store.apikeys import IssuedApiKey
from fleetgate.store.audit import CLI_ACTOR
from fleetgate.store.database import Database
from fleetgate.store.sealing import KeyEncryptionKey

if TYPE_CHECKING:
    from fleetgate.api.server import ApiServer

log = logging.getLogger("fleetgate.serve")

MAX_PORT = 65_535
# Ten years: keeps the cutoff date far from datetime's limits.
MAX_CONNECTION_LOG_DAYS = 3650
CONNECTION_LOG_DEFAULTS = ConnectionLogSettings()
# A day. The bound also keeps out "inf", which timedelta cannot hold.
MAX_IDLE_TIMEOUT = 86_400
# A bound against typos: every worker opens its own database connections.
MAX_WORKERS = 64


class LogLevel(enum.StrEnum):
    """Values of ``--log-level``."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


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
        int,
        typer.Option(
            min=0,
            max=MAX_PORT,
            help="UDP port of the device gateway (coaps); 0 picks one.",
        ),
    ] = 5684,
    hostname: HostnameOption = None,
    server_cert: ServerCertOption = None,
    server_key: Annotated[
        Path | None, typer.Option(help="Private key (PEM) of --server-cert.")
    ] = None,
    idle_timeout: Annotated[
        float,
        typer.Option(
            min=1,
            max=MAX_IDLE_TIMEOUT,
            help="Seconds after which an idle DTLS session is closed.",
        ),
    ] = 300.0,
    max_sessions: Annotated[
        int, typer.Option(min=1, help="Maximum number of concurrent DTLS sessions.")
    ] = 10_000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_WORKERS,
            help="Gateway worker processes sharing the UDP port (SO_REUSEPORT); "
            "1 serves devices and the API in one process.",
        ),
    ] = 1,
    api_host: Annotated[
        str, typer.Option(help="Address the management API (HTTP) binds.")
    ] = ApiSettings.host,
    api_port: Annotated[
        int,
        typer.Option(
            min=0, max=MAX_PORT, help="TCP port of the management API; 0 picks one."
        ),
    ] = ApiSettings.port,
    no_api: Annotated[
        bool, typer.Option("--no-api", help="Serve devices only, without the API.")
    ] = False,
    log_level: Annotated[
        LogLevel,
        typer.Option(
            case_sensitive=False,
            help="Lowest level of the log lines written to standard error.",
        ),
    ] = LogLevel.INFO,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            case_sensitive=False,
            envvar=LOG_FORMAT_ENV,
            help="Format of the log lines: text, or json for one JSON object per line.",
        ),
    ] = LogFormat.TEXT,
    metrics_without_key: Annotated[
        bool,
        typer.Option(
            "--metrics-without-key",
            envvar=METRICS_WITHOUT_KEY_ENV,
            help="Serve /metrics without an API key to clients on loopback "
            "addresses; other clients still need an admin key.",
        ),
    ] = False,
    connection_log_days: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_CONNECTION_LOG_DAYS,
            help="Days that connection log events are kept.",
        ),
    ] = CONNECTION_LOG_DEFAULTS.retention.days,
    connection_log_max_events: Annotated[
        int,
        typer.Option(min=1, help="Newest connection log events kept per project."),
    ] = CONNECTION_LOG_DEFAULTS.max_events_per_project,
) -> None:
    """Run the device gateway (CoAP over DTLS) and the management API (HTTP)."""
    configure_logging(log_level.value, log_format)
    # Migration progress is noise on every start; failures still surface.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = Settings.from_options(data_dir, database_url)
    if (server_cert is None) != (server_key is None):
        error_console.print(
            "[red]error:[/] cannot start: give both --server-cert and --server-key"
        )
        raise typer.Exit(2)

    with exit_on_error():
        _create_data_dir(settings.data_dir)
        if server_cert is not None and server_key is not None:
            identity = load_server_identity(server_cert, server_key)
        else:
            identity = ensure_development_identity(
                settings.server_pki_dir, tuple(hostname or ())
            )
        psk_key = KeyEncryptionKey.load_or_create(settings.key_encryption_key_file)
        db = Database.open(settings.resolved_database_url)
        gateway_settings = GatewaySettings(
            host=host,
            port=port,
            idle_timeout=dt.timedelta(seconds=idle_timeout),
            max_sessions=max_sessions,
            workers=workers,
            connection_log=dataclasses.replace(
                CONNECTION_LOG_DEFAULTS,
                retention=dt.timedelta(days=connection_log_days),
                max_events_per_project=connection_log_max_events,
            ),
        )
        api_settings = (
            None
            if no_api
            else ApiSettings(
                host=api_host, port=api_port, metrics_without_key=metrics_without_key
            )
        )
        favour_event_loop()
        try:
            asyncio.run(_run(db, identity, psk_key, gateway_settings, api_settings))
        finally:
            db.dispose()


def _create_data_dir(folder: Path) -> None:
    # Owner-only, because the folder contains device data, hashed API
    # keys and the development CA key.
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupFailed(
            f"cannot create data folder {str(folder)!r}: {exc.strerror}; "
            "pass --data-dir with a folder you can write to"
        ) from exc


async def _run(
    db: Database,
    identity: ServerIdentity,
    psk_key: KeyEncryptionKey,
    settings: GatewaySettings,
    api_settings: ApiSettings | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    gateway: Gateway | WorkerPool
    if settings.workers > 1:
        gateway = _create_worker_pool(db, identity, settings, psk_key)
    else:
        gateway = _create_gateway(db, identity, settings, psk_key)
    try:
        await gateway.start()
    except OSError as exc:
        raise _bind_error(exc, settings) from exc
    api: ApiServer | None = None
    try:
        bound_host, bound_port = gateway.address
        if identity.root_path is not None:
            _say(f"Devices must trust the server CA at {identity.root_path.resolve()}")
        _say(f"Device gateway ready on coaps://{_url_host(bound_host)}:{bound_port}")

        if api_settings is not None:
            # Imported here: FastAPI takes a large share of the start-up
            # time of every other fleetgate command.
            from fleetgate.api.app import create_app
            from fleetgate.api.server import ApiServer
            from fleetgate.forecast import load_server_chain

            app = create_app(
                db,
                trust_changed=gateway.trust.invalidate,
                rpc_call=gateway.rpc.call,
                close_sessions=gateway.close_device_sessions,
                server_chain=load_server_chain(
                    identity.credentials.certificate_chain, identity.root_path
                ),
                psk_key=psk_key,
                psk_changed=gateway.psk.reload_project,
            )
            app.state.metrics_without_key = api_settings.metrics_without_key
            api = ApiServer(app, api_settings.host, api_settings.port)
            await api.start()
            api_host, api_port = api.address
            base_url = f"http://{_url_host(api_host)}:{api_port}"
            # Made only once the API listens, so that a start that fails
            # never creates a key without showing it. The ready line comes
            # last, so a script that waits for it has the key too.
            admin_key = await asyncio.to_thread(
                apikeys.ensure_admin_key, db, actor=CLI_ACTOR
            )
            if admin_key is not None:
                _announce_admin_key(admin_key, base_url)
            _say(f"Web console at {base_url}/console/")
            _say(f"API ready on {base_url}")

        await stop.wait()
        log.info("shutting down")
    finally:
        if api is not None:
            await api.stop()
        await gateway.stop()


def _create_gateway(
    db: Database,
    identity: ServerIdentity,
    settings: GatewaySettings,
    psk_key: KeyEncryptionKey,
) -> Gateway:
    try:
        return Gateway(db, identity.credentials, settings, psk_key=psk_key)
    except SSL.Error as exc:
        # The files were checked already, so this is a chain or key that
        # OpenSSL rejects for its own reasons, such as an unsupported key.
        credentials = identity.credentials
        raise StartupFailed(
            f"cannot use server certificate chain {credentials.certificate_chain} "
            f"and key {credentials.private_key}: OpenSSL rejected them ({exc})"
        ) from exc


def _create_worker_pool(
    db: Database,
    identity: ServerIdentity,
    settings: GatewaySettings,
    psk_key: KeyEncryptionKey,
) -> WorkerPool:
    root = logging.getLogger()
    json_logs = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    return WorkerPool(
        settings.workers,
        database_url=db.engine.url.render_as_string(hide_password=False),
        credentials=identity.credentials,
        settings=settings,
        log_level=logging.getLevelName(root.getEffectiveLevel()),
        log_format=LogFormat.JSON if json_logs else LogFormat.TEXT,
        psk_key_file=psk_key.path,
    )


def _bind_error(exc: OSError, settings: GatewaySettings) -> StartupFailed:
    where = f"UDP port {settings.port} on {settings.host}"
    if isinstance(exc, socket.gaierror):
        return StartupFailed(
            f"cannot start the device gateway: host {settings.host!r} does not "
            f"resolve ({exc.strerror}); pass --host with an IP address such "
            "as :: or 127.0.0.1"
        )
    if exc.errno == errno.EADDRINUSE:
        return StartupFailed(
            f"cannot start the device gateway on {where}: the port is already "
            "in use, perhaps by another fleetgate serve; stop that process or "
            "pick another port with --port"
        )
    return StartupFailed(
        f"cannot start the device gateway on {where}: {exc.strerror}; check "
        "--host and --port"
    )


def _announce_admin_key(admin_key: IssuedApiKey, base_url: str) -> None:
    # Printed, never logged: this is the only time the key is shown.
    _say(
        f"Created admin API key {admin_key.record.id}; it is shown only this "
        f"once:\n  {admin_key.secret}\nSend it in the x-api-key header to "
        f"{base_url}/v1 (API docs at {base_url}/docs). Make keys for one "
        "project with 'fleetgate apikey create --project ID'."
    )


def _say(text: str) -> None:
    error_console.print(text, soft_wrap=True, markup=False)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
