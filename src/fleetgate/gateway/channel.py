"""The event channel between ``fleetgate serve`` and its gateway workers.

Each worker process has one Unix ``SOCK_SEQPACKET`` socket pair with the
parent, which runs the management API. Messages are tuples whose first
item names their kind, pickled: both ends are the same Fleetgate
installation and the socket pair is private to the two processes.

Guarantees: messages on one channel arrive in the order sent, whole or
not at all. Nothing is stored: messages sent to a worker that is not
running, or queued for it when it exits, are lost. That is safe for
change notifications, because a worker's sessions end with the worker
and their devices read current values when they observe again. A
channel whose queue is full (a stalled peer) drops new messages and
logs how many.

:class:`ChangeRelay` connects the in-process change feeds of
:mod:`fleetgate.store.changes` to a channel: it forwards every change
committed in this process, and replays changes from other processes to
local listeners without sending them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import pickle
import socket
import threading
from collections.abc import Callable
from typing import Any

from fleetgate.store.changes import (
    ChangeFeed,
    ota_changes,
    settings_changes,
    state_changes,
)

log = logging.getLogger(__name__)

# Largest message: an RPC call or reply with its parameters and detail
# (at most 1 KiB and 4 KiB encoded) fits with a wide margin.
MAX_MESSAGE_BYTES = 256 * 1024
# Messages waiting to be written before new ones are dropped.
MAX_QUEUED_MESSAGES = 100_000

Message = tuple[Any, ...]
MessageHandler = Callable[[Message], None]

# The feeds relayed between processes, by the name sent on the channel.
FEEDS: dict[str, ChangeFeed] = {
    "state": state_changes,
    "settings": settings_changes,
    "ota": ota_changes,
}
# Origin of a change committed in this process, and of one that a worker
# received from the parent.
LOCAL = -1
PARENT = -2


@dataclasses.dataclass(frozen=True)
class Answer:
    """A worker's answer to a request of the parent: a value or an error."""

    value: Any = None
    # Set on failure: "not_connected", "timed_out", "invalid", "conflict",
    # "failed", or "worker_stopped" when the worker exited meanwhile.
    error_kind: str | None = None
    message: str = ""


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """Return a connected pair of sockets for one channel: parent's end first."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def encode(message: Message) -> bytes:
    """Serialize ``message`` for the channel."""
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(payload: bytes) -> Message:
    """Deserialize a message that :func:`encode` made."""
    message = pickle.loads(payload)  # noqa: S301  (the peer is our own child)
    if not isinstance(message, tuple) or not message:
        raise ValueError(f"cannot decode channel message of type {type(message)}")
    return message


class EventChannel:
    """Sends and receives messages on one end of a channel, in the event loop."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.name = name
        self._socket = sock
        self._socket.setblocking(False)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED_MESSAGES)
        self._loop = asyncio.get_running_loop()
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._dropped = 0
        self.closed = asyncio.Event()

    def start(self, on_message: MessageHandler) -> None:
        """Start reading; ``on_message`` gets each message, in the loop."""
        self._writer = self._loop.create_task(
            self._write_forever(), name=f"fleetgate-channel-{self.name}-out"
        )
        self._reader = self._loop.create_task(
            self._read_forever(on_message), name=f"fleetgate-channel-{self.name}-in"
        )

    def post(self, message: Message) -> None:
        """Queue ``message`` for sending; from the event loop's thread only."""
        if self.closed.is_set():
            return
        try:
            self._queue.put_nowait(encode(message))
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning(
                    "channel queue full, messages dropped channel=%s dropped=%d",
                    self.name,
                    self._dropped,
                )

    def post_threadsafe(self, message: Message) -> None:
        """Queue ``message`` for sending; from any thread."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.post, message)

    async def close(self) -> None:
        """Stop reading and writing, and close the socket."""
        self.closed.set()
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._socket.close()

    async def _write_forever(self) -> None:
        while True:
            payload = await self._queue.get()
            try:
                await self._loop.sock_sendall(self._socket, payload)
            except OSError as exc:
                log.debug("channel closed channel=%s error=%s", self.name, exc)
                self.closed.set()
                return

    async def _read_forever(self, on_message: MessageHandler) -> None:
        while True:
            try:
                payload = await self._loop.sock_recv(self._socket, MAX_MESSAGE_BYTES)
            except OSError as exc:
                log.debug("channel closed channel=%s error=%s", self.name, exc)
                payload = b""
            if not payload:
                self.closed.set()
                return
            try:
                message = decode(payload)
            except (pickle.UnpicklingError, ValueError, EOFError) as exc:
                log.error(
                    "cannot read channel message channel=%s error=%s", self.name, exc
                )
                continue
            try:
                on_message(message)
            except Exception:
                log.exception(
                    "channel message failed channel=%s kind=%s", self.name, message[0]
                )


class ChangeRelay:
    """Forwards this process's committed changes and replays other processes' ones."""

    def __init__(self, forward: Callable[[str, str, tuple[str, ...], int], None]):
        # Called with the feed name, the first argument, the path and
        # the origin: LOCAL, or the worker index a replayed change came from.
        self._forward = forward
        self._replaying = threading.local()
        self._unsubscribes: list[Callable[[], None]] = []

    def start(self) -> None:
        """Listen to every relayed feed."""
        for name, feed in FEEDS.items():
            listener = functools.partial(self._published, name)
            self._unsubscribes.append(feed.subscribe(listener))

    def stop(self) -> None:
        """Stop listening."""
        for unsubscribe in self._unsubscribes:
            unsubscribe()
        self._unsubscribes.clear()

    def replay(self, name: str, first: str, path: tuple[str, ...], origin: int) -> None:
        """Publish a change committed in another process to this one's listeners."""
        feed = FEEDS.get(name)
        if feed is None:
            log.error("cannot replay change of unknown feed %r", name)
            return
        self._replaying.origin = origin
        try:
            feed.publish(first, path)
        finally:
            del self._replaying.origin

    def _published(self, name: str, first: str, path: tuple[str, ...]) -> None:
        origin = getattr(self._replaying, "origin", LOCAL)
        self._forward(name, first, tuple(path), origin)
