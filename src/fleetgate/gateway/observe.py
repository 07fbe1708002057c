"""Observe (RFC 7641) on LightDB State, settings, RPC and OTA manifests.

The observable prefixes are ``.d``, ``.c``, ``.rpc`` and ``.u``.

A GET with Observe 0 on an observable path registers the device as an
observer of that path under the request's token, when the response is
2.xx. The response carries an Observe sequence number. Each later change
of the value, or of a value above or below the path, sends a
notification: the same GET rendered again, with the same token and a
larger sequence number (24 bits, one counter per gateway, so that a
re-registration never goes backwards, section 4.4). A GET with the same
token registers again and replaces the entry (section 4.1). The entry
goes on a GET with Observe 1, a Reset in reply to a notification
(section 3.6), a non-2.xx notification (section 4.2), a confirmable
notification left unacknowledged, or the end of the session.

Notifications are non-confirmable, except that one is sent confirmable
when ``con_interval`` (60 s by default) has passed since the last one
that was: RFC 7641 section 4.5 asks for a confirmable notification at
least every 24 hours, and this finds a device that silently went away
within a minute of its next change. A confirmable notification is
retransmitted with RFC 7252 section 4.8 timing; if no acknowledgement
arrives, the observation is removed. Changes that arrive while a
notification is being sent are folded into one more notification with
the latest value (section 4.5.2).

Changes are learned from :data:`fleetgate.store.changes.state_changes`,
so only changes made in this ``fleetgate serve`` are notified, in any of
its worker processes. A value changed by another Fleetgate server
sharing the database, or by the command line, reaches an observer only
when it reads the value again or reconnects.
At most ``MAX_OBSERVATIONS_PER_SESSION`` paths are observed per session;
past that, a registration gets a plain response without the Observe
option, which RFC 7641 section 4.1 allows.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import random
from typing import TYPE_CHECKING

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from fleetgate.gateway.resources import CoapResponse, response_message

if TYPE_CHECKING:
    from fleetgate.gateway.coap import DeviceLink

log = logging.getLogger(__name__)

OBSERVABLE_PREFIXES = frozenset({".d", ".c", ".rpc", ".u"})
MAX_OBSERVATIONS_PER_SESSION = 16
# RFC 7641 section 4.4: sequence numbers are 24-bit.
SEQUENCE_MODULUS = 1 << 24
CON_INTERVAL = 60.0
# RFC 7252 section 4.8 defaults.
ACK_TIMEOUT = 2.0
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = 4
# Message IDs of non-confirmable notifications kept to match a Reset.
SENT_WINDOW = 1024
# Notifications sent back to back for changes that keep arriving before
# another task takes over.
MAX_ROUNDS_PER_TASK = 32

LinkKey = int
# Project ID, device ID, Uri-Path, Uri-Query and Accept of an observed GET.
RenderKey = tuple[str, str, tuple[str, ...], tuple[str, ...], object]
# Renderings kept for reuse; the oldest is dropped first.
MAX_RENDERED = 4096


@dataclasses.dataclass(eq=False)
class Observation:
    """One observer: a device's session, its token and the observed path."""

    link: DeviceLink
    device_id: str
    token: bytes
    request: Message
    path: tuple[str, ...]
    last_confirmable: float
    active: bool = True
    stale: bool = False
    task: asyncio.Task[None] | None = None
    # The registry's change counter when this observation last became stale.
    stale_since: int = 0


class ObserverRegistry:
    """Every observation of a gateway, by session and by device."""

    def __init__(
        self,
        *,
        con_interval: float = CON_INTERVAL,
        ack_timeout: float = ACK_TIMEOUT,
        max_retransmit: int = MAX_RETRANSMIT,
    ) -> None:
        self.con_interval = con_interval
        self.ack_timeout = ack_timeout
        self.max_retransmit = max_retransmit
        self._by_link: dict[LinkKey, dict[bytes, Observation]] = {}
        self._by_device: dict[str, set[Observation]] = {}
        self._sequence = random.randrange(SEQUENCE_MODULUS)
        self._sent: collections.OrderedDict[tuple[LinkKey, int], Observation] = (
            collections.OrderedDict()
        )
        self._awaiting: dict[tuple[LinkKey, int], asyncio.Future[Type]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Counts changes, so that a rendered notification can be reused
        # by every observer of the same request that a change made stale.
        self._changes = 0
        self._rendered: collections.OrderedDict[RenderKey, tuple[int, CoapResponse]] = (
            collections.OrderedDict()
        )

    @property
    def count(self) -> int:
        """Number of active observations."""
        return sum(len(table) for table in self._by_link.values())

    def after_request(
        self, link: DeviceLink, message: Message, response: CoapResponse
    ) -> CoapResponse:
        """Register or cancel per the request's Observe option; return the response."""
        observe = message.opt.observe
        if message.code is not Code.GET or observe is None or link.device is None:
            return response
        if observe == 1:
            self._remove(link, message.token, reason="cancelled")
            return response
        path = tuple(message.opt.uri_path)
        if (
            observe != 0
            or not response.code.is_successful()
            or not path
            or path[0] not in OBSERVABLE_PREFIXES
        ):
            self._remove(link, message.token, reason="not observable")
            return response

        table = self._by_link.setdefault(id(link), {})
        if message.token not in table and len(table) >= MAX_OBSERVATIONS_PER_SESSION:
            log.warning(
                "observation not registered project=%s device=%s path=/%s "
                "reason=too_many_observations max=%d",
                link.device.project_id,
                link.device.device_id,
                "/".join(path),
                MAX_OBSERVATIONS_PER_SESSION,
            )
            return response

        self._loop = asyncio.get_running_loop()
        self._remove(link, message.token, reason="registered again")
        observation = Observation(
            link=link,
            device_id=link.device.device_id,
            token=message.token,
            request=message,
            path=path,
            last_confirmable=self._loop.time(),
        )
        table[message.token] = observation
        self._by_device.setdefault(observation.device_id, set()).add(observation)
        log.debug(
            "observation registered device=%s path=/%s",
            observation.device_id,
            "/".join(path),
        )
        return dataclasses.replace(response, observe=self._next_sequence())

    def reply_received(self, link: DeviceLink, message: Message) -> None:
        """Take an acknowledgement or Reset of a notification."""
        key = (id(link), message.mid)
        waiter = self._awaiting.get(key)
        if waiter is not None and not waiter.done():
            waiter.set_result(message.mtype)
            return
        observation = self._sent.pop(key, None)
        if observation is not None and message.mtype is Type.RST:
            # RFC 7641 section 3.6: a Reset to a notification cancels it.
            self._remove(link, observation.token, reason="reset")

    def state_changed(self, device_id: str, steps: tuple[str, ...]) -> None:
        """Schedule notifications for a change of a device's state; any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._changed, device_id, (".d", *steps))

    def resource_changed(
        self, prefix: str, project_id: str, device_id: str | None
    ) -> None:
        """Schedule notifications of observations under ``prefix``; any thread.

        Only the device ``device_id`` is notified, or every device of the
        project when it is None.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._resource_changed, prefix, project_id, device_id)

    def observing_links(self) -> list[DeviceLink]:
        """Return the sessions that have at least one active observation."""
        return [
            next(iter(table.values())).link for table in self._by_link.values() if table
        ]

    def forget(self, link: DeviceLink) -> None:
        """Drop every observation of a closed session."""
        table = self._by_link.pop(id(link), {})
        for observation in table.values():
            self._deactivate(observation)
        for key in [key for key in self._sent if key[0] == id(link)]:
            del self._sent[key]

    def _changed(self, device_id: str, changed: tuple[str, ...]) -> None:
        self._changes += 1
        for observation in list(self._by_device.get(device_id, ())):
            if _overlaps(observation.path, changed):
                self._schedule(observation)

    def _resource_changed(
        self, prefix: str, project_id: str, device_id: str | None
    ) -> None:
        self._changes += 1
        if device_id is None:
            candidates = [item for group in self._by_device.values() for item in group]
        else:
            candidates = list(self._by_device.get(device_id, ()))
        for observation in candidates:
            device = observation.link.device
            if (
                observation.path[0] == prefix
                and device is not None
                and device.project_id == project_id
            ):
                self._schedule(observation)

    def _schedule(self, observation: Observation) -> None:
        if not observation.active:
            return
        observation.stale_since = self._changes
        if observation.task is not None and not observation.task.done():
            observation.stale = True
            return
        observation.stale = True
        observation.task = asyncio.get_running_loop().create_task(
            self._notify_changes(observation),
            name=f"fleetgate-notify-{observation.device_id}",
        )

    async def _notify_changes(self, observation: Observation) -> None:
        for _ in range(MAX_ROUNDS_PER_TASK):
            if not observation.active or not observation.stale:
                return
            observation.stale = False
            await self._notify(observation)
        if observation.stale:
            # Hand over to a new task once this one has finished.
            asyncio.get_running_loop().call_soon(self._schedule, observation)

    def observations_of(
        self, project_id: str, device_id: str, prefix: str
    ) -> list[Observation]:
        """Return a device's active observations of paths under ``prefix``."""
        return [
            observation
            for observation in self._by_device.get(device_id, ())
            if observation.active
            and observation.path[0] == prefix
            and observation.link.device is not None
            and observation.link.device.project_id == project_id
        ]

    async def send(self, observation: Observation, response: CoapResponse) -> None:
        """Send ``response`` as a notification of ``observation``, on the loop.

        Resources such as ``.rpc`` push events that a new GET would not
        render again, so the caller provides the notification's body.
        """
        if observation.active:
            await self._deliver(observation, response)

    async def _notify(self, observation: Observation) -> None:
        response = await self._render(observation)
        if observation.active:
            await self._deliver(observation, response)

    async def _render(self, observation: Observation) -> CoapResponse:
        """Render the observed GET again, or reuse a rendering as new as needed.

        Thousands of observers of one value would otherwise each read
        it from the store after every change. Only requests without
        block-wise options are shared, because their response does not
        depend on the session.
        """
        request = observation.request
        device = observation.link.device
        if device is None or request.opt.block1 is not None or request.opt.block2:
            return await observation.link.render(request)
        key = (
            device.project_id,
            device.device_id,
            tuple(request.opt.uri_path),
            tuple(request.opt.uri_query),
            request.opt.accept,
        )
        cached = self._rendered.get(key)
        if cached is not None and cached[0] >= observation.stale_since:
            return cached[1]

        rendered_at = self._changes
        response = await observation.link.render(request)
        previous = self._rendered.get(key)
        if previous is None or previous[0] <= rendered_at:
            self._rendered[key] = (rendered_at, response)
            self._rendered.move_to_end(key)
            while len(self._rendered) > MAX_RENDERED:
                self._rendered.popitem(last=False)
        return response

    async def _deliver(self, observation: Observation, response: CoapResponse) -> None:
        link = observation.link
        # A device disabled since its last recheck gets nothing more.
        if not await link.still_allowed():
            link.end_revoked()
            return
        if not observation.active:
            return
        loop = asyncio.get_running_loop()
        final = not response.code.is_successful()
        confirmable = loop.time() - observation.last_confirmable >= self.con_interval
        if final:
            # RFC 7641 section 4.2: an error notification ends the observation.
            self._remove(link, observation.token, reason=f"response {response.code}")
        else:
            response = dataclasses.replace(response, observe=self._next_sequence())
        message = response_message(response)
        message.token = observation.token
        message.mtype = Type.CON if confirmable else Type.NON
        message.mid = link.endpoint.next_mid()
        encoded = message.encode()

        if not confirmable:
            self._remember(id(link), message.mid, observation)
            link.session.send(encoded)
            return
        observation.last_confirmable = loop.time()
        await self._send_confirmable(observation, message.mid, encoded)

    async def _send_confirmable(
        self, observation: Observation, mid: int, encoded: bytes
    ) -> None:
        link = observation.link
        key = (id(link), mid)
        waiter: asyncio.Future[Type] = asyncio.get_running_loop().create_future()
        self._awaiting[key] = waiter
        timeout = self.ack_timeout * random.uniform(1.0, ACK_RANDOM_FACTOR)
        try:
            for _ in range(self.max_retransmit + 1):
                link.session.send(encoded)
                try:
                    reply = await asyncio.wait_for(asyncio.shield(waiter), timeout)
                except TimeoutError:
                    timeout *= 2
                    continue
                if reply is Type.RST:
                    self._remove(link, observation.token, reason="reset")
                return
        finally:
            self._awaiting.pop(key, None)

        log.warning(
            "observer did not acknowledge a notification, observation removed "
            "device=%s path=/%s retransmissions=%d",
            observation.device_id,
            "/".join(observation.path),
            self.max_retransmit,
        )
        self._remove(link, observation.token, reason="no acknowledgement")

    def _remember(self, link_key: LinkKey, mid: int, observation: Observation) -> None:
        self._sent[(link_key, mid)] = observation
        while len(self._sent) > SENT_WINDOW:
            self._sent.popitem(last=False)

    def _remove(self, link: DeviceLink, token: bytes, *, reason: str) -> None:
        table = self._by_link.get(id(link))
        observation = None if table is None else table.pop(token, None)
        if observation is None:
            return
        self._deactivate(observation)
        log.debug(
            "observation removed device=%s path=/%s reason=%s",
            observation.device_id,
            "/".join(observation.path),
            reason,
        )

    def _deactivate(self, observation: Observation) -> None:
        observation.active = False
        observers = self._by_device.get(observation.device_id)
        if observers is not None:
            observers.discard(observation)
            if not observers:
                del self._by_device[observation.device_id]
        task = observation.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) % SEQUENCE_MODULUS
        return self._sequence


def _overlaps(observed: tuple[str, ...], changed: tuple[str, ...]) -> bool:
    """Tell whether a change at ``changed`` may alter the value at ``observed``."""
    shorter = min(len(observed), len(changed))
    return observed[:shorter] == changed[:shorter]
