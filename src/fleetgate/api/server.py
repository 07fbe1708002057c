"""Serve the management API with uvicorn inside an existing event loop.

``fleetgate serve`` runs the device gateway and this server in one
asyncio loop. uvicorn's ``Server.serve()`` replaces the SIGINT and
SIGTERM handlers with its own for as long as it runs, and raises the
signal again when it stops (uvicorn 0.55, ``Server.capture_signals``).
That would take the signals away from ``fleetgate serve``, which must
stop the gateway too, so :class:`_EmbeddedServer` leaves the handlers
alone and :meth:`ApiServer.stop` ends uvicorn's loop instead.

The listening socket is bound here rather than by uvicorn. A port in use
then raises an error that ``fleetgate serve`` reports, where uvicorn
would call ``sys.exit``. Port 0 picks a free port, which
:attr:`ApiServer.address` reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from fleetgate.errors import StartupFailed

log = logging.getLogger(__name__)

# Time for open requests to finish at shutdown before they are cancelled.
GRACEFUL_SHUTDOWN_SECONDS = 5
START_TIMEOUT_SECONDS = 10.0
# Extra time for uvicorn's own shutdown steps after the grace period.
STOP_TIMEOUT_SECONDS = GRACEFUL_SHUTDOWN_SECONDS + 5.0


class ApiServerState(enum.Enum):
    """Lifecycle of an :class:`ApiServer`."""

    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that keeps the process's signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """The management API on one TCP address, in the running event loop."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.state = ApiServerState.CREATED
        config = uvicorn.Config(
            app,
            # uvicorn's own logging setup is skipped, so its lines go
            # through Fleetgate's handlers. Its access log is off because
            # GuardMiddleware logs each request at DEBUG instead.
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        self._server = _EmbeddedServer(config)
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound TCP address; the port is real even when 0 was requested."""
        if self._socket is None:
            raise RuntimeError("cannot tell the address: the API is not running")
        sockname = self._socket.getsockname()
        return str(sockname[0]), int(sockname[1])

    async def start(self) -> None:
        """Bind the socket and return once uvicorn accepts connections."""
        self._socket = _bind(self.host, self.port)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name="fleetgate-api"
        )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if self._task.done():
                # Raises what made uvicorn stop, such as an app error.
                self._task.result()
                raise StartupFailed("cannot start the management API: it stopped")
            if loop.time() > deadline:
                await self.stop()
                raise StartupFailed(
                    "cannot start the management API: uvicorn did not start "
                    f"within {START_TIMEOUT_SECONDS:.0f} seconds"
                )
            await asyncio.sleep(0.01)

        self.state = ApiServerState.RUNNING
        host, port = self.address
        log.info("management API listening on tcp %s port %d", host, port)

    async def stop(self) -> None:
        """Stop accepting, let open requests finish, and close the socket."""
        if self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._task, STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                log.error(
                    "management API did not stop within %.0f seconds",
                    STOP_TIMEOUT_SECONDS,
                )
            self._task = None
        if self._socket is not None:
            self._socket.close()
        self.state = ApiServerState.STOPPED
        log.info("management API stopped")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Lets a restarted server bind while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupFailed(
            f"cannot start the management API on {host} port {port}: "
            f"{exc.strerror}; pick another with --api-host and --api-port, "
            "or pass --no-api"
        ) from exc
    sock.setblocking(False)
    return sock
