"""A device client that also observes resources (RFC 7641).

:class:`ObservingClient` keeps :class:`~fleetgate.client.coap.DeviceClient`'s
model, one confirmable request in flight at a time as Golioth's firmware
SDK sends them, and adds what a long-running device needs besides:

- :meth:`ObservingClient.observe` registers an observation under a token
  of its own, and notifications of that token are queued instead of
  rejected, whether they arrive while a request waits for its response
  or between requests. A confirmable notification is acknowledged, and
  a retransmitted one is acknowledged again but queued once.
- :meth:`ObservingClient.probe` sends the SDK's connectivity probe, a
  confirmable DELETE without Uri-Path and with a token of eight zero
  bytes, which the gateway answers 2.02 Deleted.
- :meth:`ObservingClient.wait` takes what arrives within a time, so an
  idle device still hears of changes.

Limitation: a notification whose Observe sequence number is older than
the last one of its token is still delivered (RFC 7641 4.4 would drop
it), because the gateway sends each observation's notifications in order
over one session.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
import time
from typing import Any

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from fleetgate.client.coap import TOKEN_BYTES, CoapReply, DeviceClient, _split_path
from fleetgate.client.errors import RequestRejected

# Golioth's firmware SDK probes with an empty DELETE and these token bytes.
PROBE_TOKEN = bytes(8)
# Notifications queued before the oldest is dropped, when nobody takes them.
MAX_QUEUED_NOTIFICATIONS = 256


@dataclasses.dataclass(frozen=True)
class Notification:
    """A notification of an observed path: its code, body and sequence number."""

    path: str
    code: Code
    payload: bytes
    content_format: int | None
    sequence: int | None

    @property
    def successful(self) -> bool:
        """Whether the code is of class 2 (Success)."""
        return bool(self.code.is_successful())


class ObservingClient(DeviceClient):
    """A :class:`DeviceClient` that observes paths and sends the SDK's probe."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._observed: dict[bytes, str] = {}
        self._notifications: collections.deque[Notification] = collections.deque(
            maxlen=MAX_QUEUED_NOTIFICATIONS
        )

    @property
    def observed_paths(self) -> list[str]:
        """The paths observed in this session, in registration order."""
        return list(self._observed.values())

    def observe(self, path: str, *, accept: int | None = None) -> CoapReply:
        """Register an observation of ``path`` and return the first response.

        Later notifications come from :meth:`wait`. A response that is
        not 2.xx, or that lacks the Observe option, ends the observation
        at once (RFC 7641 3.2), and the caller can tell by
        :attr:`observed_paths`.
        """
        token = secrets.token_bytes(TOKEN_BYTES)
        message = self._new_request(Code.GET, path, token)
        message.opt.observe = 0
        if accept is not None:
            message.opt.accept = accept
        self._observed[token] = path
        try:
            reply = self._send_request(message, f"GET /{path} (observe)")
        except BaseException:
            self._observed.pop(token, None)
            raise
        if not reply.code.is_successful() or reply.opt.observe is None:
            self._observed.pop(token, None)
        return _reply_of(reply)

    def probe(self) -> float:
        """Send the SDK's connectivity probe and return its round trip in seconds."""
        message = self._new_request(Code.DELETE, "", PROBE_TOKEN)
        started = time.monotonic()
        reply = self._send_request(message, "DELETE / (probe)")
        if not reply.code.is_successful():
            raise RequestRejected(
                f"cannot probe {self.channel.peer}: the server responded "
                f"{reply.code.dotted}"
            )
        return time.monotonic() - started

    def wait(self, timeout: float) -> list[Notification]:
        """Take what arrives within ``timeout`` seconds and return the notifications.

        Returns as soon as one notification is queued, or after the
        timeout with none. Raises SessionClosed when the server ends the
        session.
        """
        deadline = time.monotonic() + timeout
        while not self._notifications:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            record = self.channel.receive(remaining)
            if record is None:
                break
            received = self._decode(record)
            if received is not None:
                self._reject_unexpected(received)
        return self.take_notifications()

    def take_notifications(self) -> list[Notification]:
        """Return the queued notifications, oldest first, and empty the queue."""
        taken = list(self._notifications)
        self._notifications.clear()
        return taken

    def _reject_unexpected(self, received: Message) -> None:
        # DeviceClient calls this for every message that does not answer
        # the request in flight, so notifications are caught here.
        path = self._observed.get(received.token)
        if path is None or not received.code.is_response():
            super()._reject_unexpected(received)
            return
        if received.mtype is Type.CON:
            if received.mid in self._acknowledged:
                self._acknowledge(received.mid)  # our ACK was lost
                return
            self._acknowledge(received.mid)
        if not received.code.is_successful() or received.opt.observe is None:
            # RFC 7641 3.2: such a notification ends the observation.
            self._observed.pop(received.token, None)
        content = received.opt.content_format
        self._notifications.append(
            Notification(
                path=path,
                code=received.code,
                payload=received.payload,
                content_format=None if content is None else int(content),
                sequence=received.opt.observe,
            )
        )

    def _new_request(self, code: Code, path: str, token: bytes) -> Message:
        segments, queries = _split_path(path)
        message = Message(code=code)
        message.mtype = Type.CON
        message.mid = self._next_mid()
        message.token = token
        message.opt.uri_path = segments
        if queries:
            message.opt.uri_query = queries
        return message

    def _send_request(self, message: Message, action: str) -> Message:
        reply = self._exchange(message, action)
        if reply.mtype is Type.RST:
            raise RequestRejected(
                f"cannot {action} on {self.channel.peer}: the server reset "
                f"message {message.mid}"
            )
        return reply


def _reply_of(message: Message) -> CoapReply:
    content = message.opt.content_format
    max_age = message.opt.max_age
    return CoapReply(
        code=message.code,
        payload=message.payload,
        content_format=None if content is None else int(content),
        max_age=None if max_age is None else int(max_age),
    )
