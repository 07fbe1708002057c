"""The CoAP message layer over established DTLS sessions (RFC 7252).

Each session gets a :class:`DeviceLink`: it binds the session to a
device record (the association rule runs once, right after the
handshake), then serves the device's requests one at a time, in order,
so that a POST followed by a GET reads its own write.

Message-layer duties handled here: piggybacked responses to confirmable
requests, non-confirmable responses to non-confirmable ones, a reset for
an empty confirmable message (a CoAP ping, section 4.3), deduplication
of retransmitted requests within the exchange lifetime (section 4.5),
4.02 for unrecognised critical options (section 5.4.1), and a reset for
a confirmable message that cannot be parsed (section 4.2).

aiocoap is used as a codec only (``Message.decode``/``encode``); its
transports are not, because plugging a custom DTLS transport into it
relies on private API.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiocoap.error import UnparsableMessage
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.numbers.types import Type
from prometheus_client import Histogram

from fleetgate import metrics
from fleetgate.errors import DeviceRejected, FleetgateError, StoreUnavailable
from fleetgate.gateway.blockwise import BlockwiseTransfers
from fleetgate.gateway.codec import decode_message, encode_response
from fleetgate.gateway.dtls import DtlsSession
from fleetgate.gateway.observe import ObserverRegistry
from fleetgate.gateway.refusals import RefusalLog
from fleetgate.gateway.resources import (
    CoapRequest,
    CoapResponse,
    ConnectedDevice,
    Router,
)

if TYPE_CHECKING:
    from fleetgate.gateway.tracking import ConnectionTracker

log = logging.getLogger(__name__)

# RFC 7252 section 4.8.2: EXCHANGE_LIFETIME with default parameters.
EXCHANGE_LIFETIME = 247.0
# Remembered exchanges per session; a device rarely has more than a few
# requests in flight, so this bounds memory without losing duplicates.
DEDUPLICATION_WINDOW = 32
# Requests queued behind the one being served before new ones are shed.
MAX_QUEUED_REQUESTS = 16
# How long a refused device's requests get 4.03 or 5.03 responses before
# its session is closed.
REFUSAL_GRACE_SECONDS = 2.0
# Max-Age of a 5.03 response: when the device may retry (RFC 7252 5.9.3.4).
RETRY_AFTER_SECONDS = 30
# Largest CoAP message that fits one DTLS record, whose plaintext is at
# most 2^14 bytes (RFC 6347 4.1, RFC 5246 6.2.1). Larger bodies travel
# block-wise (RFC 7959, see blockwise.py), so only a response with huge
# options or a diagnostic could still exceed it.
MAX_MESSAGE_BYTES = 16384

HANDLED_OPTIONS = frozenset(
    {
        OptionNumber.URI_HOST,
        OptionNumber.URI_PORT,
        OptionNumber.URI_PATH,
        OptionNumber.URI_QUERY,
        OptionNumber.CONTENT_FORMAT,
        OptionNumber.ACCEPT,
        OptionNumber.OBSERVE,
        OptionNumber.ETAG,
        OptionNumber.SIZE1,
        OptionNumber.BLOCK1,
        OptionNumber.BLOCK2,
        OptionNumber.SIZE2,
        OptionNumber.MAX_AGE,
    }
)

Associator = Callable[[object], Awaitable[ConnectedDevice]]
# Raises DeviceRejected when the device or its anchor CA was disabled.
Revalidator = Callable[[object, ConnectedDevice], Awaitable[None]]
# How often an established session rechecks that its device and anchor CA
# are still enabled: at its next request or notification after this many
# seconds, and for a session with observations also without either.
REVALIDATE_SECONDS = 5.0
# How many times per REVALIDATE_SECONDS the endpoint looks for observing
# sessions whose recheck is due, so one ends at most about 1.2 intervals
# after its device or CA was disabled.
RECHECK_SWEEPS_PER_INTERVAL = 5

# The request duration histogram's series by (resource, request code,
# response code class), filled by DeviceLink._measure.
_REQUEST_SECONDS_SERIES: dict[tuple[str, Code, int], Histogram] = {}


class DeviceLink:
    """The CoAP side of one established session."""

    def __init__(self, endpoint: CoapEndpoint, session: DtlsSession) -> None:
        self.endpoint = endpoint
        self.session = session
        self.device: ConnectedDevice | None = None
        self.transfers = BlockwiseTransfers()
        # Requests waiting to be served, in order. Created with the first
        # request and dropped once served, so an idle link keeps none.
        self._pending: collections.deque[Message] | None = None
        # message ID -> (time received, encoded response or None while busy)
        self._exchanges: collections.OrderedDict[int, tuple[float, bytes | None]] = (
            collections.OrderedDict()
        )
        # The response every request gets once the device is refused.
        self._refusal: CoapResponse | None = None
        self._closing: asyncio.TimerHandle | None = None
        self._checked_at = 0.0
        # The running recheck of the device's standing, and the refusal
        # that a recheck found, which ends the session for good.
        self._recheck: asyncio.Task[None] | None = None
        self._revoked: DeviceRejected | None = None
        # Runs the association, then serves requests while any are
        # pending. An idle link has no task: with a task and a queue each,
        # idle sessions took about 5 KiB more (bench/memory.py).
        self._worker: asyncio.Task[None] | None = self._start()

    @property
    def idle(self) -> bool:
        """True when no request is waiting or being served."""
        return self._worker is None and not self._pending

    def receive(self, payload: bytes) -> None:
        """Take one CoAP message from the peer."""
        try:
            message = decode_message(payload)
        except (UnparsableMessage, UnicodeDecodeError) as exc:
            # aiocoap raises UnicodeDecodeError for a string option, such
            # as Uri-Path, that is not UTF-8: a format error as well.
            self._reset_unparsable(payload, exc)
            return

        if message.mtype in (Type.ACK, Type.RST):
            # Replies to server-initiated messages: Observe notifications.
            self.endpoint.observers.reply_received(self, message)
            return
        if message.code is Code.EMPTY:
            if message.mtype is Type.CON:
                self._send(_empty(Type.RST, message.mid))
            return
        if not message.code.is_request():
            # RFC 7252 4.2: a confirmable response or a code of a reserved
            # class cannot be processed, so it is rejected.
            if message.mtype is Type.CON:
                self._log_reset(
                    "not_a_request",
                    f"a confirmable message with code {message.code.dotted}",
                )
                self._send(_empty(Type.RST, message.mid))
            return

        if self._is_duplicate(message):
            return
        if self._refusal is not None:
            self._respond(message, self._refusal)
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = collections.deque()
        if len(pending) >= MAX_QUEUED_REQUESTS:
            log.warning(
                "request queue full, request dropped peer=%s:%s",
                *self.session.address,
            )
            self._exchanges.pop(message.mid, None)
            return
        pending.append(message)
        if self._worker is None:
            self._worker = self._start()

    def close(self) -> None:
        """Stop serving; pending requests are dropped."""
        # A cancelled task keeps its CancelledError, whose traceback references
        # the worker's frame and so this link and its session: drop the
        # task here so that no cycle keeps the session's memory alive.
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
        if self._closing is not None:
            self._closing.cancel()
            self._closing = None
        self._pending = None

    def _start(self) -> asyncio.Task[None]:
        peer = f"{self.session.address[0]}:{self.session.address[1]}"
        return asyncio.get_running_loop().create_task(
            self._work(), name=f"fleetgate-coap-{peer}"
        )

    async def _work(self) -> None:
        """Associate the device once, then serve pending requests in order."""
        try:
            if self.device is None and not await self._associate():
                return
            pending = self._pending
            while pending:
                message = pending.popleft()
                try:
                    if not await self._serve(message):
                        return
                except Exception:
                    log.exception("request failed peer=%s:%s", *self.session.address)
            self._pending = None
        finally:
            # Nothing awaits between the last check of ``pending`` and
            # here, so a request received meanwhile starts a new worker.
            self._worker = None

    async def _associate(self) -> bool:
        """Bind the session to its device record; False when refused."""
        identity = self.session.peer_identity
        try:
            self.device = await self.endpoint.associate(identity)
        except DeviceRejected as exc:
            log.warning(
                "device rejected peer=%s:%s %s",
                self.session.address[0],
                self.session.address[1],
                exc.log_fields(),
            )
            if self.endpoint.tracker is not None:
                self.endpoint.tracker.device_rejected(self.session, identity, exc)
            self._refuse(CoapResponse.diagnostic(Code.FORBIDDEN, exc.message))
            return False
        except FleetgateError as exc:
            # The store logs its own outages, once and not per device.
            level = (
                logging.DEBUG if isinstance(exc, StoreUnavailable) else logging.ERROR
            )
            log.log(
                level,
                "cannot associate device peer=%s:%s reason=%s error=%s",
                self.session.address[0],
                self.session.address[1],
                exc.reason,
                exc,
            )
            unavailable = CoapResponse.diagnostic(
                Code.SERVICE_UNAVAILABLE, "cannot associate the device, retry later"
            )
            self._refuse(dataclasses.replace(unavailable, max_age=_retry_after(exc)))
            return False

        if self.endpoint.tracker is not None:
            self.endpoint.tracker.device_associated(self.session, self.device, identity)
        self._checked_at = asyncio.get_running_loop().time()
        return True

    async def _serve(self, message: Message) -> bool:
        """Serve one request; False when the session ended instead."""
        assert self.device is not None
        if not await self.still_allowed():
            self.end_revoked(message)
            return False
        whole = self.transfers.reassemble(message)
        if isinstance(whole, CoapResponse):
            self._respond(message, whole)  # 2.31 Continue or an error
            return True
        started_at = time.perf_counter()
        response = await self._dispatch(self.device, whole)
        response = self.transfers.finish(message, response)
        response = self.endpoint.observers.after_request(self, message, response)
        self._respond(message, response)
        self._measure(whole, response, time.perf_counter() - started_at)
        return True

    async def still_allowed(self) -> bool:
        """Tell whether the device may still get data, rechecking when due.

        An operator who disables a device or a CA expects its open
        sessions to stop, not only its next handshake. The recheck runs
        at most every REVALIDATE_SECONDS, and callers that arrive while
        one runs wait for its verdict. A refusal is final.
        """
        if self.device is None:
            return False
        if self._revoked is None:
            check = self._recheck
            if check is None:
                loop = asyncio.get_running_loop()
                if loop.time() - self._checked_at < REVALIDATE_SECONDS:
                    return True
                self._checked_at = loop.time()
                check = self._recheck = loop.create_task(
                    self._recheck_standing(), name="fleetgate-recheck"
                )
            await asyncio.shield(check)
        return self._revoked is None

    def end_revoked(self, message: Message | None = None) -> None:
        """Close the session of a device that a recheck refused.

        ``message``, the request being served, gets a 4.03 that names why.
        """
        revoked = self._revoked
        if revoked is None:
            return
        if message is not None:
            self._respond(
                message, CoapResponse.diagnostic(Code.FORBIDDEN, revoked.message)
            )
        if self.endpoint.tracker is not None:
            self.endpoint.tracker.closing(self.session, revoked.reason)
        self.session.close(notify=True)

    def standing(self) -> bool | None:
        """Tell whether the device may still get data, or None if a recheck is due.

        Unlike :meth:`still_allowed` it never waits, so a caller serving
        many sessions awaits only those whose recheck is due or running.
        """
        if self.device is None or self._revoked is not None:
            return False
        if self._recheck is not None:
            return None
        if asyncio.get_running_loop().time() - self._checked_at >= REVALIDATE_SECONDS:
            return None
        return True

    async def recheck_observer(self) -> None:
        """Recheck a session that may only observe, ending it when refused."""
        if not await self.still_allowed():
            self.end_revoked()

    async def _recheck_standing(self) -> None:
        assert self.device is not None
        try:
            await self.endpoint.revalidate(self.session.peer_identity, self.device)
        except DeviceRejected as exc:
            log.warning(
                "session ended peer=%s:%s %s",
                self.session.address[0],
                self.session.address[1],
                exc.log_fields(),
            )
            self._revoked = exc
        except FleetgateError as exc:
            # The store is unreachable: keep serving on the last verdict
            # rather than cutting every device off during an outage.
            level = (
                logging.DEBUG if isinstance(exc, StoreUnavailable) else logging.ERROR
            )
            log.log(
                level,
                "cannot recheck device peer=%s:%s reason=%s error=%s",
                self.session.address[0],
                self.session.address[1],
                exc.reason,
                exc,
            )
        except Exception:
            log.exception("cannot recheck device peer=%s:%s", *self.session.address)
        finally:
            self._recheck = None

    def _refuse(self, response: CoapResponse) -> None:
        """Respond to every request with ``response`` for a short while, then close.

        The device learns why it is refused from a CoAP response, which it
        reports, instead of from a session that silently goes away.
        """
        self._refusal = response
        pending, self._pending = self._pending, None
        for message in pending or ():
            self._respond(message, response)
        self._closing = asyncio.get_running_loop().call_later(
            REFUSAL_GRACE_SECONDS, self.session.close
        )

    def _respond(self, message: Message, response: CoapResponse) -> None:
        encoded = self._reply(message, response)
        size = len(encoded)
        if size > MAX_MESSAGE_BYTES:
            # OpenSSL cannot send it, so the device would only time out.
            log.warning(
                "response too large, 5.00 sent instead peer=%s:%s path=/%s "
                "size=%d max=%d",
                self.session.address[0],
                self.session.address[1],
                "/".join(message.opt.uri_path),
                size,
                MAX_MESSAGE_BYTES,
            )
            too_large = CoapResponse.diagnostic(
                Code.INTERNAL_SERVER_ERROR,
                f"cannot send the response: its {size} bytes exceed the "
                f"maximum of {MAX_MESSAGE_BYTES} in one message, so request "
                "a smaller resource, such as a sub-path",
            )
            encoded = self._reply(message, too_large)
        self._transmit(encoded, remember=message)

    async def render(self, message: Message) -> CoapResponse:
        """Serve ``message`` again, as an Observe notification does."""
        assert self.device is not None
        response = await self._dispatch(self.device, message)
        return self.transfers.finish(message, response)

    def _measure(
        self, request: Message, response: CoapResponse, seconds: float
    ) -> None:
        path = request.opt.uri_path
        # Only resources the router serves become label values, so that
        # device input cannot create new series.
        if not path:
            resource = "-"
        elif self.endpoint.router.resolve(tuple(path)) is not None:
            resource = path[0]
        else:
            resource = "unknown"
        key = (resource, request.code, int(response.code) >> 5)
        series = _REQUEST_SECONDS_SERIES.get(key)
        if series is None:
            # labels() costs more than the observation, so each series is
            # looked up once. The key's values are bounded as the labels
            # are: routed resources, CoAP codes and code classes.
            series = _REQUEST_SECONDS_SERIES[key] = metrics.COAP_REQUEST_SECONDS.labels(
                resource=resource,
                method=request.code.name if request.code.is_request() else "-",
                code_class=f"{key[2]}.xx",
            )
        series.observe(seconds)

    def _reply(self, message: Message, response: CoapResponse) -> bytes:
        """Encode the response to ``message``, piggybacked on the ACK of a CON."""
        if message.mtype is Type.CON:
            mtype, mid = Type.ACK, message.mid
        else:
            mtype, mid = Type.NON, self.endpoint.next_mid()
        return encode_response(response, mtype=mtype, mid=mid, token=message.token)

    async def _dispatch(
        self, device: ConnectedDevice, message: Message
    ) -> CoapResponse:
        unknown = [
            int(option.number)
            for option in message.opt.option_list()
            if option.number.is_critical() and option.number not in HANDLED_OPTIONS
        ]
        if unknown:
            return CoapResponse.diagnostic(
                Code.BAD_OPTION, f"unsupported critical options {unknown}"
            )
        path = tuple(message.opt.uri_path)
        if not path and message.code is Code.DELETE:
            return _keepalive_response()
        handler = self.endpoint.router.resolve(path)
        if handler is None:
            return CoapResponse.diagnostic(
                Code.NOT_FOUND, f"no resource at /{'/'.join(path)}"
            )
        request = CoapRequest(
            device=device,
            method=message.code,
            path=path,
            payload=message.payload,
            content_format=_int_or_none(message.opt.content_format),
            accept=_int_or_none(message.opt.accept),
            observe=message.opt.observe,
            query=tuple(message.opt.uri_query),
            block2=message.opt.block2,
        )
        try:
            response = await handler(request)
        except FleetgateError as exc:
            response = CoapResponse.diagnostic(_coap_code(exc.coap_code), exc.message)
            if response.code in (Code.SERVICE_UNAVAILABLE, Code.TOO_MANY_REQUESTS):
                # RFC 7252, section 5.9.3.4, and RFC 8516: Max-Age is when
                # to retry.
                response = dataclasses.replace(response, max_age=_retry_after(exc))
            self.endpoint.refusals.record(request, response, exc.reason)
            return response
        except Exception:
            log.exception(
                "request failed project=%s device=%s path=/%s",
                device.project_id,
                device.device_id,
                "/".join(path),
            )
            return CoapResponse.diagnostic(
                Code.INTERNAL_SERVER_ERROR, "internal error, see the server log"
            )
        if response.code.class_ >= 4:
            self.endpoint.refusals.record(request, response)
        return response

    def _is_duplicate(self, message: Message) -> bool:
        now = time.monotonic()
        while self._exchanges:
            mid, (received, _) = next(iter(self._exchanges.items()))
            if now - received < EXCHANGE_LIFETIME and (
                len(self._exchanges) < DEDUPLICATION_WINDOW
            ):
                break
            del self._exchanges[mid]

        seen = self._exchanges.get(message.mid)
        if seen is None:
            self._exchanges[message.mid] = (now, None)
            return False
        cached = seen[1]
        if cached is not None:
            self.session.send(cached)
        return True

    def _send(self, message: Message) -> None:
        self._transmit(message.encode())

    def _transmit(self, encoded: bytes, *, remember: Message | None = None) -> None:
        if remember is not None and remember.mid in self._exchanges:
            received, _ = self._exchanges[remember.mid]
            self._exchanges[remember.mid] = (received, encoded)
        self.session.send(encoded)

    def _log_reset(self, reason: str, detail: str) -> None:
        peer = f"{self.session.address[0]}:{self.session.address[1]}"
        self.endpoint.refusals.record_reset(self.device, peer, reason, detail)

    def _reset_unparsable(self, payload: bytes, error: Exception) -> None:
        # The message is malformed, so its bytes are not logged: only the
        # parser's complaint, cut short.
        self._log_reset("malformed_message", str(error)[:200] or type(error).__name__)
        if len(payload) >= 4:
            first, _, mid = struct.unpack_from("!BBH", payload)
            if first >> 6 == 1 and (first >> 4) & 0x3 == Type.CON:
                self._send(_empty(Type.RST, mid))


class CoapEndpoint:
    """Serves CoAP over every established DTLS session of a listener."""

    def __init__(
        self,
        router: Router,
        associate: Associator,
        revalidate: Revalidator,
        *,
        tracker: ConnectionTracker | None = None,
    ) -> None:
        self.router = router
        self.associate = associate
        self.revalidate = revalidate
        # Hears of associations, authenticated traffic and session ends.
        self.tracker = tracker
        self.observers = ObserverRegistry()
        self.refusals = RefusalLog()
        self._links: dict[int, DeviceLink] = {}
        self._mid = int.from_bytes(os.urandom(2), "big")
        # Runs while any session is open; see _recheck_observers.
        self._rechecker: asyncio.Task[None] | None = None

    def next_mid(self) -> int:
        """Return the next message ID for a message the server originates."""
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def session_established(self, session: DtlsSession) -> None:
        """Start a device link for ``session``."""
        link = DeviceLink(self, session)
        session.application_state = link
        self._links[id(session)] = link
        if self._rechecker is None:
            self._rechecker = asyncio.get_running_loop().create_task(
                self._recheck_observers(), name="fleetgate-recheck-observers"
            )

    def datagram_received(self, session: DtlsSession, payload: bytes) -> None:
        """Pass one decrypted CoAP message to the session's link."""
        link = self._links.get(id(session))
        if link is not None:
            if self.tracker is not None:
                self.tracker.traffic(session)
            link.receive(payload)

    def session_closed(self, session: DtlsSession) -> None:
        """Stop the link of a closed session."""
        link = self._links.pop(id(session), None)
        if link is not None:
            self.observers.forget(link)
            link.close()
        if not self._links and self._rechecker is not None:
            self._rechecker.cancel()
            self._rechecker = None
        if self.tracker is not None:
            self.tracker.session_closed(session)

    async def _recheck_observers(self) -> None:
        """Recheck the standing of sessions that observe, when due.

        Such a session may send no request for a long time, yet gets
        notifications, so its recheck cannot wait for a request.
        """
        while self._links:
            await asyncio.sleep(REVALIDATE_SECONDS / RECHECK_SWEEPS_PER_INTERVAL)
            # Only sessions whose recheck is due, or that were refused, get
            # a task, so the sweep costs little between rechecks.
            links = [
                link
                for link in self.observers.observing_links()
                if link.standing() is not True
            ]
            try:
                await asyncio.gather(*(link.recheck_observer() for link in links))
            except Exception:
                log.exception("cannot recheck observing sessions")

    @property
    def link_count(self) -> int:
        """Number of sessions currently served."""
        return len(self._links)


def _empty(mtype: Type, mid: int) -> Message:
    message = Message(code=Code.EMPTY)
    message.mtype = mtype
    message.mid = mid
    return message


def _keepalive_response() -> CoapResponse:
    """Answer the connectivity probe of Golioth's firmware SDK.

    The SDK's libcoap port (``src/coap_client.c``) checks the session at
    its start and after an idle spell with a confirmable DELETE that has
    no Uri-Path. It counts any response, but a Reset does not count, and
    a 4.04 reads as a failure in packet captures, so 2.02 Deleted is sent
    (RFC 7252 5.8.4: DELETE of a missing resource may succeed).
    """
    return CoapResponse(Code.DELETED)


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _retry_after(exc: FleetgateError) -> int:
    retry_after = getattr(exc, "retry_after", None)
    return retry_after if isinstance(retry_after, int) else RETRY_AFTER_SECONDS


def _coap_code(dotted: str) -> Code:
    """Map a dotted code such as ``"4.04"`` to its ``Code`` (RFC 7252 3)."""
    klass, detail = dotted.split(".")
    return Code(int(klass) << 5 | int(detail))
