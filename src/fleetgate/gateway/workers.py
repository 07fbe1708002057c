"""Several gateway worker processes on one UDP port, run by ``fleetgate serve``.

With ``--workers N`` the parent process runs the management API and a
:class:`WorkerPool`, and N child processes
(:mod:`fleetgate.gateway.worker`) each run a complete gateway on their
own socket bound to the same port with SO_REUSEPORT. Linux hands each
datagram to one socket of the group by a hash of its source and
destination addresses and ports, so all of a device's datagrams reach
the worker that has its DTLS session for as long as the set of sockets
does not change. The workers share a handshake cookie secret
(:class:`fleetgate.gateway.cookies.SharedCookieJar`) and the database.

When a worker exits, its sessions are lost, and the group has one socket
less until the parent starts a replacement: the kernel then spreads
datagrams over the remaining sockets by a new mapping, and again when
the replacement binds. A device whose datagrams move to another worker
gets no response there: its next request times out, and it handshakes
again, which its new worker accepts. So a worker restart costs a new
handshake for the devices of that worker and for part of the devices of
the others. The parent restarts a worker that exits unexpectedly after
a back-off that doubles from 0.5 s up to 30 s, and falls back to 0.5 s
once a worker has run for a minute.

Cross-process events go over one channel per worker
(:mod:`fleetgate.gateway.channel`), with the parent as the hub:

- LightDB State, settings and OTA changes committed in any process reach
  every other process, and its observers, at most once and in order per
  sending process; changes sent while a worker is restarting are lost
  for it, which loses nothing, since it holds no sessions then.
- A CA certificate change through the API drops the project's trust
  anchors in every worker at once (otherwise within 2 seconds).
- An RPC call through the API goes to every running worker; the workers
  that hold no observer of ``.rpc`` for the device answer "not
  connected", and the first reply from the device wins. If the worker
  holding the device exits during a call, the call fails with 409
  ``device_not_connected`` at once; the device may or may not have
  received it. Calls made while no worker holds the device also get 409.

SIGTERM or SIGINT to the parent stops the API, then sends SIGTERM to
every worker and waits up to 15 seconds for each before killing it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import itertools
import logging
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from fleetgate.config import GatewaySettings
from fleetgate.errors import (
    Conflict,
    FleetgateError,
    InvalidInput,
    Reason,
    StartupFailed,
)
from fleetgate.gateway.channel import (
    MAX_MESSAGE_BYTES,
    Answer,
    ChangeRelay,
    EventChannel,
    Message,
    channel_pair,
    decode,
    encode,
)
from fleetgate.gateway.services.rpc import (
    DeviceNotConnected,
    RpcResult,
    RpcTimedOut,
)
from fleetgate.gateway.tls import ServerCredentials
from fleetgate.gateway.worker import WorkerConfig
from fleetgate.log_format import LogFormat

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# A worker that ran this long before it exited restarts after FIRST_BACKOFF.
STABLE_SECONDS = 60.0
# Extra seconds an RPC call waits for the workers beyond its own timeout.
RPC_GRACE_SECONDS = 5.0
COOKIE_SECRET_BYTES = 32
# Imported rather than run with -m, so that the configuration's classes
# unpickle as those of fleetgate.gateway.worker, not of __main__.
WORKER_COMMAND = (
    "import sys; from fleetgate.gateway.worker import main; sys.exit(main())"
)
# The order in which the workers' RPC failures are reported: the first
# present wins, because a timeout tells the caller more than "not connected".
RPC_ERRORS: dict[str, type[FleetgateError]] = {
    "timed_out": RpcTimedOut,
    "invalid": InvalidInput,
    "conflict": Conflict,
    "failed": FleetgateError,
    "worker_stopped": DeviceNotConnected,
}


class WorkerState(enum.Enum):
    """Lifecycle of one worker slot."""

    STARTING = "starting"
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


@dataclasses.dataclass(eq=False)
class WorkerSlot:
    """One worker index: its current process and channel."""

    index: int
    state: WorkerState = WorkerState.STOPPED
    process: subprocess.Popen[bytes] | None = None
    channel: EventChannel | None = None
    started_at: float = 0.0
    backoff: float = FIRST_BACKOFF
    restarts: int = 0


class BroadcastHook:
    """Calls a per-project hook, such as a cache's invalidation, in every worker."""

    def __init__(self, pool: WorkerPool, name: str) -> None:
        self._pool = pool
        self._name = name

    def invalidate(self, project_id: str) -> None:
        """Run the hook for ``project_id`` in every running worker; any thread."""
        self._pool.broadcast_threadsafe(("invalidate", self._name, project_id))

    reload_project = invalidate


class WorkerPool:
    """Starts, watches and stops the gateway workers, and relays their events.

    It offers what ``fleetgate serve`` hands to the API from a single
    process's :class:`~fleetgate.gateway.server.Gateway`: ``address``,
    ``trust.invalidate``, ``rpc.call`` and ``close_device_sessions``.
    """

    def __init__(
        self,
        count: int,
        *,
        database_url: str,
        credentials: ServerCredentials,
        settings: GatewaySettings,
        log_level: str,
        log_format: LogFormat = LogFormat.TEXT,
        psk_key_file: Path | None = None,
    ) -> None:
        if count < 2:
            raise ValueError(f"a worker pool needs at least 2 workers, not {count}")
        self.settings = dataclasses.replace(
            settings,
            reuse_port=True,
            cookie_secret=secrets.token_bytes(COOKIE_SECRET_BYTES),
        )
        self._database_url = database_url
        self._credentials = credentials
        self._log_level = log_level
        self._log_format = log_format
        self._psk_key_file = psk_key_file
        self.slots = [WorkerSlot(index) for index in range(count)]
        self.port: int | None = None
        self._stopping = False
        self._watchers: set[asyncio.Task[None]] = set()
        self._relay = ChangeRelay(self._forward_change)
        self._request_ids = itertools.count(1)
        self._requests: dict[tuple[int, int], asyncio.Future[Answer]] = {}
        self.trust = BroadcastHook(self, "trust")
        self.psk = BroadcastHook(self, "psk")
        self.rpc = self

    @property
    def address(self) -> tuple[str, int]:
        """The UDP address that every worker binds."""
        if self.port is None:
            raise RuntimeError("cannot tell the address: the workers are not running")
        return self.settings.host, self.port

    async def start(self) -> None:
        """Start every worker and return once all are ready.

        The parent binds the port first with SO_REUSEPORT and holds it
        while the workers start, so that port 0 becomes one real port
        for all of them. Its socket never reads, and it closes before
        the port is announced. Raises OSError for a port that cannot be
        bound, and StartupFailed for anything else a worker reports.
        """
        placeholder = _bind_reusable(self.settings.host, self.settings.port)
        try:
            port = int(placeholder.getsockname()[1])
            self.port = port
            await asyncio.gather(*(self._launch(slot, port) for slot in self.slots))
        except BaseException:
            await self.stop()
            raise
        finally:
            placeholder.close()
        self._relay.start()

    async def stop(self) -> None:
        """Stop every worker: SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        self._stopping = True
        self._relay.stop()
        for watcher in list(self._watchers):
            watcher.cancel()
        running = [slot for slot in self.slots if slot.process is not None]
        for slot in running:
            assert slot.process is not None
            if slot.process.poll() is None:
                slot.process.terminate()
        for slot in running:
            await self._reap(slot)
        log.info("gateway workers stopped")

    def worker_pids(self) -> list[int | None]:
        """Return each worker slot's process ID, or None while it is not running."""
        return [
            slot.process.pid if slot.process is not None and _is_running(slot) else None
            for slot in self.slots
        ]

    def broadcast_threadsafe(self, message: Message) -> None:
        """Send ``message`` to every running worker; from any thread."""
        for slot in self.slots:
            if slot.channel is not None:
                slot.channel.post_threadsafe(message)

    async def call(
        self,
        project_id: str,
        device_id: str,
        method: str,
        params: list[Any],
        timeout: float,
    ) -> RpcResult:
        """Send an RPC call through every running worker and return the reply."""
        request_id, waiting = self._send_to_all(
            ("rpc", project_id, device_id, method, params, timeout)
        )
        if not waiting:
            raise DeviceNotConnected(
                f"cannot call device {device_id!r}: no gateway worker is running, "
                "so retry once the device has connected again"
            )
        answers: list[Answer] = []
        try:
            async with asyncio.timeout(timeout + RPC_GRACE_SECONDS):
                for next_done in asyncio.as_completed(waiting):
                    answer = await next_done
                    if answer.error_kind is None:
                        reply_id, status_code, detail = answer.value
                        return RpcResult(reply_id, status_code, detail)
                    answers.append(answer)
        except TimeoutError:
            raise RpcTimedOut(
                f"device {device_id!r} did not reply to call {method!r} within "
                f"{timeout:g} s"
            ) from None
        finally:
            self._forget_request(request_id)
        raise _rpc_error(device_id, answers)

    async def close_device_sessions(
        self, project_id: str, device_ids: Collection[str], reason: Reason
    ) -> int:
        """Close these devices' sessions in every worker; return how many closed."""
        if not device_ids:
            return 0
        request_id, waiting = self._send_to_all(
            ("close_sessions", project_id, sorted(device_ids), str(reason))
        )
        try:
            done = await asyncio.wait(waiting, timeout=RPC_GRACE_SECONDS)
        finally:
            self._forget_request(request_id)
        return sum(int(future.result().value or 0) for future in done[0])

    # Requests to the workers

    def _send_to_all(
        self, request: Message
    ) -> tuple[int, list[asyncio.Future[Answer]]]:
        request_id = next(self._request_ids)
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[Answer]] = []
        for slot in self.slots:
            if not _is_running(slot):
                continue
            assert slot.channel is not None
            future: asyncio.Future[Answer] = loop.create_future()
            self._requests[(request_id, slot.index)] = future
            waiting.append(future)
            slot.channel.post((request[0], request_id, *request[1:]))
        return request_id, waiting

    def _forget_request(self, request_id: int) -> None:
        for slot in self.slots:
            self._requests.pop((request_id, slot.index), None)

    def _fail_requests(self, slot: WorkerSlot) -> None:
        stopped = Answer(
            error_kind="worker_stopped",
            message=f"cannot complete the call: gateway worker {slot.index}, "
            "which may hold the device, stopped during the call; the device "
            "may or may not have received it",
        )
        for (_, index), future in list(self._requests.items()):
            if index == slot.index and not future.done():
                future.set_result(stopped)

    # Starting and watching

    async def _launch(self, slot: WorkerSlot, port: int) -> int:
        parent_end, child_end = channel_pair()
        settings = dataclasses.replace(
            self.settings, port=port, sync_providers=slot.index == 0
        )
        config = WorkerConfig(
            index=slot.index,
            database_url=self._database_url,
            credentials=self._credentials,
            settings=settings,
            log_level=self._log_level,
            log_format=self._log_format,
            psk_key_file=self._psk_key_file,
        )
        slot.state = WorkerState.STARTING
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER_COMMAND,
                    "--channel-fd",
                    str(child_end.fileno()),
                ],
                pass_fds=(child_end.fileno(),),
            )
        finally:
            child_end.close()
        slot.process = process
        try:
            parent_end.sendall(encode(("config", config)))
            first = await self._first_message(parent_end, slot)
        except BaseException:
            parent_end.close()
            await self._reap(slot)
            raise

        if first[0] == "failed":
            parent_end.close()
            await self._reap(slot)
            _, errno, text = first
            if errno is not None:
                raise OSError(errno, text)
            raise StartupFailed(f"cannot start gateway worker {slot.index}: {text}")
        bound_port = int(first[1])
        channel = EventChannel(parent_end, f"worker-{slot.index}")
        channel.start(lambda message: self._receive(slot, message))
        slot.channel = channel
        slot.state = WorkerState.RUNNING
        slot.started_at = time.monotonic()
        log.info(
            "gateway worker started worker=%d pid=%d port=%d",
            slot.index,
            process.pid,
            bound_port,
        )
        watcher = asyncio.get_running_loop().create_task(
            self._watch(slot, process, channel),
            name=f"fleetgate-worker-{slot.index}-watch",
        )
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return bound_port

    async def _first_message(self, sock: socket.socket, slot: WorkerSlot) -> Message:
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                payload = await loop.sock_recv(sock, MAX_MESSAGE_BYTES)
        except TimeoutError:
            raise StartupFailed(
                f"cannot start gateway worker {slot.index}: it did not report "
                f"ready within {START_TIMEOUT:.0f} seconds"
            ) from None
        if not payload:
            assert slot.process is not None
            code = await asyncio.to_thread(slot.process.wait, STOP_TIMEOUT)
            raise StartupFailed(
                f"cannot start gateway worker {slot.index}: it exited with "
                f"status {code} before it was ready; see its log lines above"
            )
        return decode(payload)

    async def _watch(
        self, slot: WorkerSlot, process: subprocess.Popen[bytes], channel: EventChannel
    ) -> None:
        """Wait for the worker to exit, then restart it after a back-off."""
        code = await asyncio.to_thread(process.wait)
        if self._stopping:
            return
        slot.state = WorkerState.BACKING_OFF
        slot.channel = None
        await channel.close()
        self._fail_requests(slot)
        if time.monotonic() - slot.started_at >= STABLE_SECONDS:
            slot.backoff = FIRST_BACKOFF
        slot.restarts += 1
        log.error(
            "gateway worker exited, restarting worker=%d pid=%d status=%s "
            "delay=%.1fs restarts=%d",
            slot.index,
            process.pid,
            code,
            slot.backoff,
            slot.restarts,
        )
        while not self._stopping:
            delay = slot.backoff
            slot.backoff = min(slot.backoff * 2, MAX_BACKOFF)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._launch(slot, self._require_port())
                return
            except (OSError, FleetgateError) as exc:
                log.error(
                    "cannot restart gateway worker worker=%d error=%s delay=%.1fs",
                    slot.index,
                    exc,
                    slot.backoff,
                )

    async def _reap(self, slot: WorkerSlot) -> None:
        process = slot.process
        if process is None:
            return
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.error(
                "gateway worker did not stop within %.0f seconds, killed worker=%d",
                STOP_TIMEOUT,
                slot.index,
            )
            process.kill()
            await asyncio.to_thread(process.wait, STOP_TIMEOUT)
        if slot.channel is not None:
            await slot.channel.close()
            slot.channel = None
        slot.state = WorkerState.STOPPED

    def _require_port(self) -> int:
        if self.port is None:
            raise RuntimeError("cannot restart a worker: the pool has no port yet")
        return self.port

    # Events from the workers

    def _receive(self, slot: WorkerSlot, message: Message) -> None:
        kind = message[0]
        if kind == "change":
            _, name, first, path = message
            self._relay.replay(name, first, tuple(path), origin=slot.index)
        elif kind == "answer":
            _, request_id, answer = message
            future = self._requests.get((request_id, slot.index))
            if future is not None and not future.done():
                future.set_result(answer)
        else:
            log.error(
                "cannot apply channel message of unknown kind %r worker=%d",
                kind,
                slot.index,
            )

    def _forward_change(
        self, name: str, first: str, path: tuple[str, ...], origin: int
    ) -> None:
        message = ("change", name, first, path)
        for slot in self.slots:
            if slot.index != origin and slot.channel is not None:
                slot.channel.post_threadsafe(message)


def _bind_reusable(host: str, port: int) -> socket.socket:
    """Bind a UDP socket with SO_REUSEPORT as each worker's gateway does.

    NOTE: Linux lets any socket of the same user with SO_REUSEPORT join
    the group, so a second ``fleetgate serve --workers`` on this port
    starts without error and takes a share of the devices.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _is_running(slot: WorkerSlot) -> bool:
    return slot.state is WorkerState.RUNNING and slot.channel is not None


def _rpc_error(device_id: str, answers: list[Answer]) -> FleetgateError:
    """Pick the failure that tells the caller most, per RPC_ERRORS order."""
    for kind, error_class in RPC_ERRORS.items():
        for answer in answers:
            if answer.error_kind == kind:
                return error_class(answer.message)
    return DeviceNotConnected(
        f"cannot call device {device_id!r}: it is not connected to any gateway "
        "worker of this Fleetgate process or does not observe .rpc, so retry "
        "once it has connected and registered an RPC method"
    )
