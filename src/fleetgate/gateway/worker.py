"""One gateway worker process of ``fleetgate serve --workers N``.

The parent starts a Python process that runs :func:`main` with
``--channel-fd FD``, one end of an event channel (:mod:`fleetgate.gateway.channel`) and
sends a :class:`WorkerConfig` as the first message. The worker opens the
database (the parent has applied migrations), binds the gateway's UDP
port with SO_REUSEPORT and reports ``("ready", port)``, or ``("failed",
errno, text)`` and exits with status 1.

Then it serves devices and the channel: changes committed here go to the
parent, changes from other processes are replayed to local observers,
``("invalidate", hook, project_id)`` drops a cache entry, and ``("rpc",
...)`` or ``("close_sessions", ...)`` runs on the gateway and sends
``("answer", request_id, Answer)`` back. SIGTERM, or the parent's end of the channel
closing, stops the worker: sessions get close_notify and it exits 0.
SIGINT is ignored, because a Ctrl-C in a terminal reaches the whole
process group and the parent stops its workers itself.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from OpenSSL import SSL

from fleetgate.config import GatewaySettings
from fleetgate.errors import Conflict, FleetgateError, InvalidInput, Reason
from fleetgate.gateway.channel import (
    LOCAL,
    MAX_MESSAGE_BYTES,
    PARENT,
    Answer,
    ChangeRelay,
    EventChannel,
    Message,
    decode,
    encode,
)
from fleetgate.gateway.server import Gateway, favour_event_loop
from fleetgate.gateway.services.rpc import DeviceNotConnected, RpcTimedOut
from fleetgate.gateway.tls import ServerCredentials
from fleetgate.log_format import LogFormat, configure_logging
from fleetgate.store.database import Database
from fleetgate.store.sealing import KeyEncryptionKey

log = logging.getLogger(__name__)

# Seconds to wait for the configuration message after start.
CONFIG_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """The settings of one worker, sent by the parent as the first message."""

    index: int
    database_url: str
    credentials: ServerCredentials
    settings: GatewaySettings
    log_level: str
    log_format: LogFormat
    # The key that opens PSK credentials; None refuses every PSK device.
    psk_key_file: Path | None


def error_kind(exc: FleetgateError) -> str:
    """Name a failure for the channel, so that the parent can raise it again."""
    if isinstance(exc, DeviceNotConnected):
        return "not_connected"
    if isinstance(exc, RpcTimedOut):
        return "timed_out"
    if isinstance(exc, InvalidInput):
        return "invalid"
    if isinstance(exc, Conflict):
        return "conflict"
    return "failed"


class WorkerRuntime:
    """The gateway of one worker and its side of the channel."""

    def __init__(self, gateway: Gateway, channel: EventChannel) -> None:
        self.gateway = gateway
        self.channel = channel
        self.relay = ChangeRelay(self._forward)
        self._calls: set[asyncio.Task[None]] = set()
        # Caches the parent may ask to drop, by the name it sends.
        self.hooks: dict[str, Callable[[str], None]] = {
            "trust": gateway.trust.invalidate,
        }
        psk = getattr(gateway, "psk", None)
        if psk is not None:
            self.hooks["psk"] = psk.reload_project

    def start(self) -> None:
        """Relay changes both ways and serve the parent's messages."""
        self.relay.start()
        self.channel.start(self.receive)

    async def stop(self) -> None:
        """Stop relaying and cancel the calls in flight."""
        self.relay.stop()
        for task in list(self._calls):
            task.cancel()
        await self.channel.close()

    def receive(self, message: Message) -> None:
        """Apply one message from the parent."""
        kind = message[0]
        if kind == "change":
            _, name, first, path = message
            self.relay.replay(name, first, tuple(path), origin=PARENT)
        elif kind == "invalidate":
            _, hook, project_id = message
            invalidate = self.hooks.get(hook)
            if invalidate is not None:
                invalidate(project_id)
        elif kind == "rpc":
            self._answer_later(message[1], self._call(*message[2:]))
        elif kind == "close_sessions":
            _, request_id, project_id, device_ids, reason = message
            self._answer_later(
                request_id, self._close_sessions(project_id, device_ids, Reason(reason))
            )
        else:
            log.error("cannot apply channel message of unknown kind %r", kind)

    def _forward(
        self, name: str, first: str, path: tuple[str, ...], origin: int
    ) -> None:
        if origin == LOCAL:
            self.channel.post_threadsafe(("change", name, first, path))

    def _answer_later(self, request_id: int, work: Awaitable[Any]) -> None:
        task = asyncio.get_running_loop().create_task(
            self._answer(request_id, work), name=f"fleetgate-request-{request_id}"
        )
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _answer(self, request_id: int, work: Awaitable[Any]) -> None:
        try:
            answer = Answer(value=await work)
        except FleetgateError as exc:
            answer = Answer(error_kind=error_kind(exc), message=exc.message)
        self.channel.post(("answer", request_id, answer))

    async def _call(
        self,
        project_id: str,
        device_id: str,
        method: str,
        params: list[Any],
        timeout: float,
    ) -> tuple[str, int, Any]:
        result = await self.gateway.rpc.call(
            project_id, device_id, method, params, timeout
        )
        return result.id, result.status_code, result.detail

    async def _close_sessions(
        self, project_id: str, device_ids: list[str], reason: Reason
    ) -> int:
        close = getattr(self.gateway, "close_device_sessions", None)
        if close is None:
            return 0
        closed: int = await close(project_id, device_ids, reason)
        return closed


async def serve(config: WorkerConfig, sock: socket.socket, db: Database) -> int:
    """Run the worker until SIGTERM or the parent goes away; return the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    try:
        psk_key = None
        if config.psk_key_file is not None:
            psk_key = KeyEncryptionKey.load(config.psk_key_file)
        gateway = Gateway(db, config.credentials, config.settings, psk_key=psk_key)
        await gateway.start()
    except OSError as exc:
        _report_failure(sock, exc.errno, exc.strerror or str(exc))
        return 1
    except (SSL.Error, FleetgateError) as exc:
        _report_failure(sock, None, str(exc))
        return 1

    channel = EventChannel(sock, f"worker-{config.index}")
    runtime = WorkerRuntime(gateway, channel)
    runtime.start()
    channel.post(("ready", gateway.address[1]))
    log.info("gateway worker ready")

    closed = loop.create_task(channel.closed.wait())
    stopped = loop.create_task(stop.wait())
    await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if closed.done() and not stopped.done():
        log.warning("gateway worker stopping: the parent process went away")
    closed.cancel()
    stopped.cancel()
    await runtime.stop()
    await gateway.stop()
    return 0


class WorkerPrefix(logging.Filter):
    """Starts each log message with ``worker=N``, so lines name their worker."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._prefix = f"worker={index} "

    def filter(self, record: logging.LogRecord) -> bool:
        """Prefix the message once and keep the record."""
        if isinstance(record.msg, str) and not record.msg.startswith(self._prefix):
            record.msg = self._prefix + record.msg
        return True


def _report_failure(sock: socket.socket, errno: int | None, text: str) -> None:
    sock.setblocking(True)
    sock.sendall(encode(("failed", errno, text)))


def _read_config(sock: socket.socket) -> WorkerConfig:
    sock.settimeout(CONFIG_TIMEOUT)
    message = decode(sock.recv(MAX_MESSAGE_BYTES))
    if message[0] != "config" or not isinstance(message[1], WorkerConfig):
        raise ValueError(f"expected a configuration message, not {message[0]!r}")
    config: WorkerConfig = message[1]
    return config


def main(argv: list[str] | None = None) -> int:
    """Run one worker on the channel given by ``--channel-fd``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel-fd", type=int, required=True)
    options = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=options.channel_fd)
    config = _read_config(sock)

    configure_logging(config.log_level, config.log_format)
    for handler in logging.getLogger().handlers:
        handler.addFilter(WorkerPrefix(config.index))
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        db = Database.open(config.database_url, apply_migrations=False)
    except FleetgateError as exc:
        _report_failure(sock, None, str(exc))
        return 1
    favour_event_loop()
    try:
        return asyncio.run(serve(config, sock, db))
    finally:
        db.dispose()
