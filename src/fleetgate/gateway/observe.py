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

Fan-out: one task sends the notifications of every change. It renders
each distinct observed request (device, path, query, Accept,
Content-Format and Block2 size) once per change, encodes the response's
options and payload once, and gives each observer its own message type,
message ID, token and sequence number. Each session's standing (device
and CA still enabled) is checked once per change for all of its
observations, and only a session whose recheck is due waits for it, in
a task of its own. The fan-out lets other work on the event loop run
after every ``NOTIFICATIONS_PER_SLICE`` notifications.

Notifications are non-confirmable, except that one is sent confirmable
when ``con_interval`` (60 s by default) has passed since the last one
that was: RFC 7641 section 4.5 asks for a confirmable notification at
least every 24 hours, and this finds a device that silently went away
within a minute of its next change. A confirmable notification is
retransmitted with RFC 7252 section 4.8 timing; if no acknowledgement
arrives, the observation is removed. An observation has at most one
notification of a change in progress (rendered, waiting for its
session's recheck, or waiting for an acknowledgement), so notifications
leave in the order of their sequence numbers. Changes that arrive
meanwhile are folded into one more notification with the latest value
(section 4.5.2).

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
import dataclasses
import logging
import random
import weakref
from typing import TYPE_CHECKING

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from fleetgate.gateway.notifications import SharedNotification
from fleetgate.gateway.resources import (
    CoapResponse,
    ConnectedDevice,
    response_message,
)

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
# Message IDs of an observation's latest non-confirmable notifications,
# kept to match a Reset to one of them.
RECENT_MIDS = 4
# Rounds of changes the fan-out task sends before a new task takes over.
MAX_ROUNDS_PER_TASK = 32
# Notifications sent back to back before the fan-out yields to the loop,
# so that requests and handshakes wait for at most this many.
NOTIFICATIONS_PER_SLICE = 256

LinkKey = int
# The device, Uri-Path, Uri-Query, Accept, Content-Format and Block2 of
# an observed GET: everything its rendering depends on.
RenderKey = tuple[
    ConnectedDevice, tuple[str, ...], tuple[str, ...], object, object, object
]


@dataclasses.dataclass(eq=False)
class Observation:
    """One observer: a device's session, its token and the observed path."""

    link: DeviceLink
    device_id: str
    token: bytes
    request: Message
    path: tuple[str, ...]
    # The observers whose GET renders the same, or None when the
    # rendering cannot be shared with other observers.
    group: RequestGroup | None
    last_confirmable: float
    active: bool = True
    # A change happened since its last notification was rendered.
    stale: bool = False
    # A notification of a change is being rendered, waits for the
    # session's recheck, or waits for its acknowledgement.
    busy: bool = False
    confirmables: list[Confirmable] = dataclasses.field(default_factory=list)
    recent_mids: list[int] = dataclasses.field(default_factory=list)


class RequestGroup:
    """Observations whose GETs render alike, so share one rendering.

    Hashed by identity, which keeps grouping a change's observers cheap.
    """

    __slots__ = ("key", "__weakref__")

    def __init__(self, key: RenderKey) -> None:
        self.key = key


@dataclasses.dataclass(eq=False)
class Confirmable:
    """A confirmable notification waiting for its acknowledgement."""

    observation: Observation
    key: tuple[LinkKey, int]
    encoded: bytes
    timeout: float
    # Whether the observation's next notification waits for this one.
    holds_busy: bool
    done: asyncio.Future[None] | None = None
    retransmissions: int = 0
    timer: asyncio.TimerHandle | None = None
    settled: bool = False


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
        # Device ID -> observed path -> its observations, in order.
        self._by_device: dict[str, dict[tuple[str, ...], dict[Observation, None]]] = {}
        self._sequence = random.randrange(SEQUENCE_MODULUS)
        # Groups live as long as an observation refers to them.
        self._groups: weakref.WeakValueDictionary[RenderKey, RequestGroup] = (
            weakref.WeakValueDictionary()
        )
        self._awaiting: dict[tuple[LinkKey, int], Confirmable] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Observations to notify, in the order their changes arrived.
        self._queue: dict[Observation, None] = {}
        self._fan_out: asyncio.Task[None] | None = None
        self._rechecks: set[asyncio.Task[None]] = set()

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
            group=self._group_of(link.device, message),
            last_confirmable=self._loop.time(),
        )
        table[message.token] = observation
        paths = self._by_device.setdefault(observation.device_id, {})
        paths.setdefault(path, {})[observation] = None
        log.debug(
            "observation registered device=%s path=/%s",
            observation.device_id,
            "/".join(path),
        )
        return dataclasses.replace(response, observe=self._next_sequence())

    def reply_received(self, link: DeviceLink, message: Message) -> None:
        """Take an acknowledgement or Reset of a notification."""
        key = (id(link), message.mid)
        confirmable = self._awaiting.get(key)
        if confirmable is not None:
            if message.mtype is Type.RST:
                self._drop(confirmable.observation, reason="reset")
            self._settle(confirmable)
            return
        if message.mtype is not Type.RST:
            return
        for observation in self._by_link.get(id(link), {}).values():
            if message.mid in observation.recent_mids:
                # RFC 7641 section 3.6: a Reset to a notification cancels it.
                self._drop(observation, reason="reset")
                return

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

    def observations_of(
        self, project_id: str, device_id: str, prefix: str
    ) -> list[Observation]:
        """Return a device's active observations of paths under ``prefix``."""
        return [
            observation
            for path, observations in self._by_device.get(device_id, {}).items()
            if path[0] == prefix
            for observation in observations
            if observation.active
            and observation.link.device is not None
            and observation.link.device.project_id == project_id
        ]

    async def send(self, observation: Observation, response: CoapResponse) -> None:
        """Send ``response`` as a notification of ``observation``, on the loop.

        Resources such as ``.rpc`` push events that a new GET would not
        render again, so the caller provides the notification's body.
        Returns once a confirmable notification is acknowledged or given
        up. Cancelling the call stops its retransmissions.
        """
        if not observation.active:
            return
        link = observation.link
        # A device disabled since its last recheck gets nothing more.
        if not await link.still_allowed():
            link.end_revoked()
            return
        if not observation.active:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        pending = self._send_one(
            observation,
            SharedNotification(response),
            now=loop.time(),
            holds_busy=False,
            done=done,
        )
        try:
            await done
        finally:
            if pending is not None:
                self._settle(pending)

    def _changed(self, device_id: str, changed: tuple[str, ...]) -> None:
        for path, observations in self._by_device.get(device_id, {}).items():
            if _overlaps(path, changed):
                for observation in observations:
                    self._schedule(observation)

    def _resource_changed(
        self, prefix: str, project_id: str, device_id: str | None
    ) -> None:
        if device_id is None:
            devices = list(self._by_device.values())
        else:
            devices = [self._by_device.get(device_id, {})]
        for paths in devices:
            for path, observations in paths.items():
                if path[0] != prefix:
                    continue
                for observation in observations:
                    device = observation.link.device
                    if device is not None and device.project_id == project_id:
                        self._schedule(observation)

    def _schedule(self, observation: Observation) -> None:
        """Queue a notification of ``observation`` unless one is in progress.

        An observation in progress is notified again once it is done,
        with the value as it is then.
        """
        if not observation.active:
            return
        observation.stale = True
        if observation.busy:
            return
        self._queue[observation] = None
        if self._fan_out is None:
            self._fan_out = asyncio.get_running_loop().create_task(
                self._fan_out_changes(), name="fleetgate-observe-fan-out"
            )

    async def _fan_out_changes(self) -> None:
        try:
            for _ in range(MAX_ROUNDS_PER_TASK):
                if not self._queue:
                    break
                batch = list(self._queue)
                self._queue = {}
                try:
                    await self._notify(batch)
                except Exception:
                    log.exception(
                        "cannot send notifications observations=%d", len(batch)
                    )
                    for observation in batch:
                        self._release(observation)
        finally:
            self._fan_out = None
        if self._queue:
            # Hand over to a new task, so that no task runs forever.
            self._fan_out = asyncio.get_running_loop().create_task(
                self._fan_out_changes(), name="fleetgate-observe-fan-out"
            )

    async def _notify(self, batch: list[Observation]) -> None:
        """Render each distinct observed request of ``batch`` once and send it."""
        active = []
        for observation in batch:
            if observation.active:
                observation.stale = False
                observation.busy = True
                active.append(observation)
        notifications = await self._render_all(active)

        # Lists of observations rather than pairs with their notification:
        # every container that lives through the batch counts towards the
        # next garbage collection, which walks the whole heap.
        by_link: dict[LinkKey, list[Observation]] = {}
        for observation in active:
            if _group_key(observation) in notifications:
                by_link.setdefault(id(observation.link), []).append(observation)
            else:
                self._release(observation)

        sent = 0
        for observations in by_link.values():
            link = observations[0].link
            allowed = link.standing()
            if allowed is None:
                self._recheck_then_deliver(link, observations, notifications)
            elif allowed:
                self._deliver(observations, notifications)
                sent += len(observations)
            else:
                self._reject(link, observations)
            if sent >= NOTIFICATIONS_PER_SLICE:
                sent = 0
                await asyncio.sleep(0)

    async def _render_all(
        self, observations: list[Observation]
    ) -> dict[object, SharedNotification]:
        """Render the observed GET of each distinct key once.

        The observers of one value share its rendering, so a change seen
        by thousands of them reads the value from the store once.
        """
        firsts: dict[object, Observation] = {}
        for observation in observations:
            firsts.setdefault(_group_key(observation), observation)
        if len(firsts) == 1:
            (first,) = firsts.values()
            responses = [await self._render(first)]
        else:
            responses = await asyncio.gather(
                *(self._render(observation) for observation in firsts.values())
            )
        return {
            key: SharedNotification(response)
            for key, response in zip(firsts, responses, strict=True)
            if response is not None
        }

    async def _render(self, observation: Observation) -> CoapResponse | None:
        """Serve the observed GET again; None, logged, when that failed."""
        try:
            return await observation.link.render(observation.request)
        except Exception:
            log.exception(
                "cannot render notification device=%s path=/%s",
                observation.device_id,
                "/".join(observation.path),
            )
            return None

    def _recheck_then_deliver(
        self,
        link: DeviceLink,
        observations: list[Observation],
        notifications: dict[object, SharedNotification],
    ) -> None:
        async def recheck() -> None:
            # A device disabled since its last recheck gets nothing more.
            if await link.still_allowed():
                self._deliver(observations, notifications)
            else:
                self._reject(link, observations)

        task = asyncio.get_running_loop().create_task(
            recheck(), name=f"fleetgate-notify-{observations[0].device_id}"
        )
        self._rechecks.add(task)
        task.add_done_callback(self._rechecks.discard)

    def _reject(self, link: DeviceLink, observations: list[Observation]) -> None:
        link.end_revoked()
        for observation in observations:
            self._release(observation)

    def _deliver(
        self,
        observations: list[Observation],
        notifications: dict[object, SharedNotification],
    ) -> None:
        now = asyncio.get_running_loop().time()
        for observation in observations:
            if observation.active:
                notification = notifications[_group_key(observation)]
                self._send_one(observation, notification, now=now, holds_busy=True)
            else:
                self._release(observation)

    def _send_one(
        self,
        observation: Observation,
        notification: SharedNotification,
        *,
        now: float,
        holds_busy: bool,
        done: asyncio.Future[None] | None = None,
    ) -> Confirmable | None:
        """Encode and send one notification; return a confirmable one's tracker."""
        link = observation.link
        confirmable = now - observation.last_confirmable >= self.con_interval
        mtype = Type.CON if confirmable else Type.NON
        mid = link.endpoint.next_mid()
        response = notification.response
        if response.code.is_successful():
            encoded = notification.encode(
                mtype=mtype,
                mid=mid,
                token=observation.token,
                observe=self._next_sequence(),
            )
        else:
            # RFC 7641 section 4.2: an error notification ends the observation.
            self._drop(observation, reason=f"response {response.code}")
            message = response_message(response)
            message.token = observation.token
            message.mtype = mtype
            message.mid = mid
            encoded = message.encode()

        if not confirmable:
            mids = observation.recent_mids
            mids.append(mid)
            if len(mids) > RECENT_MIDS:
                del mids[0]
            link.session.send(encoded)
            if holds_busy:
                self._release(observation)
            if done is not None:
                done.set_result(None)
            return None
        observation.last_confirmable = now
        pending = Confirmable(
            observation=observation,
            key=(id(link), mid),
            encoded=encoded,
            timeout=self.ack_timeout * random.uniform(1.0, ACK_RANDOM_FACTOR),
            holds_busy=holds_busy,
            done=done,
        )
        self._awaiting[pending.key] = pending
        observation.confirmables.append(pending)
        link.session.send(encoded)
        pending.timer = asyncio.get_running_loop().call_later(
            pending.timeout, self._retransmit, pending
        )
        return pending

    def _retransmit(self, pending: Confirmable) -> None:
        """Send a confirmable notification again, or give up on its observation."""
        if pending.settled:
            return
        observation = pending.observation
        if pending.retransmissions >= self.max_retransmit:
            log.warning(
                "observer did not acknowledge a notification, observation removed "
                "device=%s path=/%s retransmissions=%d",
                observation.device_id,
                "/".join(observation.path),
                pending.retransmissions,
            )
            self._drop(observation, reason="no acknowledgement")
            self._settle(pending)
            return
        pending.retransmissions += 1
        pending.timeout *= 2
        observation.link.session.send(pending.encoded)
        pending.timer = asyncio.get_running_loop().call_later(
            pending.timeout, self._retransmit, pending
        )

    def _settle(self, pending: Confirmable) -> None:
        """Stop tracking a confirmable notification; its observation may go on."""
        if pending.settled:
            return
        pending.settled = True
        if pending.timer is not None:
            pending.timer.cancel()
        if self._awaiting.get(pending.key) is pending:
            del self._awaiting[pending.key]
        observation = pending.observation
        if pending in observation.confirmables:
            observation.confirmables.remove(pending)
        if pending.done is not None and not pending.done.done():
            pending.done.set_result(None)
        if pending.holds_busy:
            self._release(observation)

    def _release(self, observation: Observation) -> None:
        """End a notification in progress; queue the next if a change came."""
        observation.busy = False
        if observation.stale:
            self._schedule(observation)

    def _remove(self, link: DeviceLink, token: bytes, *, reason: str) -> None:
        observation = self._by_link.get(id(link), {}).get(token)
        if observation is not None:
            self._drop(observation, reason=reason)

    def _drop(self, observation: Observation, *, reason: str) -> None:
        """Remove ``observation`` unless a registration already replaced it."""
        table = self._by_link.get(id(observation.link))
        if table is None or table.get(observation.token) is not observation:
            return
        del table[observation.token]
        self._deactivate(observation)
        log.debug(
            "observation removed device=%s path=/%s reason=%s",
            observation.device_id,
            "/".join(observation.path),
            reason,
        )

    def _deactivate(self, observation: Observation) -> None:
        observation.active = False
        self._queue.pop(observation, None)
        paths = self._by_device.get(observation.device_id)
        if paths is not None:
            observations = paths.get(observation.path)
            if observations is not None:
                observations.pop(observation, None)
                if not observations:
                    del paths[observation.path]
            if not paths:
                del self._by_device[observation.device_id]
        for pending in list(observation.confirmables):
            self._settle(pending)

    def _group_of(
        self, device: ConnectedDevice, request: Message
    ) -> RequestGroup | None:
        """Return the group of observers whose GET renders like ``request``.

        A GET with a body or with Block1 is rendered for its observer alone.
        """
        options = request.opt
        if request.payload or options.block1 is not None:
            return None
        key = (
            device,
            tuple(options.uri_path),
            tuple(options.uri_query),
            options.accept,
            options.content_format,
            options.block2,
        )
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = RequestGroup(key)
        return group

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) % SEQUENCE_MODULUS
        return self._sequence


def _group_key(observation: Observation) -> object:
    return observation if observation.group is None else observation.group


def _overlaps(observed: tuple[str, ...], changed: tuple[str, ...]) -> bool:
    """Tell whether a change at ``changed`` may alter the value at ``observed``."""
    shorter = min(len(observed), len(changed))
    return observed[:shorter] == changed[:shorter]
