"""A reference device that behaves like the basic examples of Golioth's firmware SDK.

:class:`DeviceSimulator` runs one device over an
:class:`~fleetgate.client.observing.ObservingClient` the way the SDK's
client thread does (golioth-firmware-sdk ``src/coap_client.c``). It
sends one confirmable request at a time, and a request unanswered for
the client's timeout (10 s in the SDK) ends the session. It probes the
connection at the start of each session and after ``keepalive`` seconds
without a response (9 s in the SDK), and it sets up its observations
again in each new session. On top of that it plays the examples:

- settings (``.c``, observed with Accept CBOR): ``LOOP_DELAY_S``, an
  integer from 1 to 100, sets the send interval. Other keys are reported
  as not recognized, in a CBOR ``.c/status`` report of ``version`` and,
  when some failed, ``errors`` (the SDK's ``golioth_settings_status``);
- LightDB State: ``counter`` is posted to ``.d/counter`` each interval,
  and ``.d/desired`` is observed: a ``counter`` there sets the counter,
  which is reported at once, and is then deleted from ``.d/desired``;
- LightDB Stream: a reading posted to ``.s/sensor``, JSON and CBOR in
  turn;
- logs: CBOR maps of ``level``, ``module`` and ``msg`` posted to
  ``.s/logs``;
- RPC (``.rpc``, observed with Accept CBOR): ``multiply``, ``echo`` and
  ``reboot``, answered on ``.rpc/status`` with the SDK's
  ``golioth_rpc_status`` codes. ``reboot`` ends the session and starts
  again with the counter at zero, as a rebooted device would;
- firmware updates on ``.u``, when given a
  :class:`~fleetgate.client.simulated_firmware.SimulatedFirmware`.

A session that ends (timeout, close_notify, a failed handshake) is
started again after a back-off of 1 s doubling up to ``max_backoff``,
back to 1 s once a probe is answered. Every step is reported to the
caller as a :class:`SimulatorEvent`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import cbor2

from fleetgate.client import CBOR, JSON
from fleetgate.client.coap import CoapReply
from fleetgate.client.errors import ClientError, CredentialsError
from fleetgate.client.observing import Notification, ObservingClient
from fleetgate.client.simulated_firmware import (
    FirmwareRebootRequired,
    SimulatedFirmware,
)

log = logging.getLogger(__name__)

# Defaults of GOLIOTH_COAP_KEEPALIVE_INTERVAL_S and
# GOLIOTH_COAP_RESPONSE_TIMEOUT_S (golioth-firmware-sdk src/Kconfig.coap).
KEEPALIVE_INTERVAL = 9.0
RESPONSE_TIMEOUT = 10.0
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
# Maximum time of one wait, so that a stop request is seen quickly.
MAX_WAIT_SLICE = 0.5

LOOP_DELAY_SETTING = "LOOP_DELAY_S"
LOOP_DELAY_RANGE = (1, 100)
LOG_MODULE = "simulator"


class SettingStatus(enum.IntEnum):
    """Per-setting outcomes of the SDK's ``enum golioth_settings_status``."""

    SUCCESS = 0
    KEY_NOT_RECOGNIZED = 1
    KEY_NOT_VALID = 2
    VALUE_FORMAT_NOT_VALID = 3
    VALUE_OUTSIDE_RANGE = 4
    VALUE_STRING_TOO_LONG = 5
    GENERAL_ERROR = 6


class RpcStatus(enum.IntEnum):
    """The SDK's ``enum golioth_rpc_status`` (the gRPC status codes)."""

    OK = 0
    CANCELED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@dataclasses.dataclass(frozen=True)
class SimulatorEvent:
    """One step of the simulated device, for display."""

    kind: str
    message: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    time: dt.datetime = dataclasses.field(
        default_factory=lambda: dt.datetime.now(dt.UTC)
    )


@dataclasses.dataclass(frozen=True)
class SimulatorOptions:
    """How often the simulated device sends and how long it runs, in seconds."""

    interval: float = 5.0
    duration: float | None = None
    logs_per_interval: int = 1
    keepalive: float = KEEPALIVE_INTERVAL
    max_backoff: float = MAX_BACKOFF

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError(f"interval must be positive, not {self.interval}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be positive, not {self.duration}")
        if self.logs_per_interval < 0:
            raise ValueError(
                f"logs_per_interval must not be negative, not {self.logs_per_interval}"
            )
        if self.keepalive <= 0:
            raise ValueError(f"keepalive must be positive, not {self.keepalive}")


T = TypeVar("T")
ClientFactory = Callable[[], ObservingClient]
EventSink = Callable[[SimulatorEvent], None]


class _Reboot(Exception):
    """The device was asked to reboot; the session ends and starts again."""


class DeviceSimulator:
    """Runs a simulated device until stopped, reconnecting when a session ends.

    ``connect`` makes a new, unconnected client for each session.
    :meth:`run` blocks, and :meth:`stop` ends it from any thread or a
    signal handler. Raises CredentialsError when the credentials cannot
    be used, because retrying would not help.
    """

    def __init__(
        self,
        connect: ClientFactory,
        sink: EventSink,
        options: SimulatorOptions | None = None,
        *,
        firmware: SimulatedFirmware | None = None,
    ) -> None:
        self._connect = connect
        self.firmware = firmware
        self._emit_to = sink
        self.options = options or SimulatorOptions()
        self.interval = self.options.interval
        self.counter = 0
        self.sessions = 0
        self.sent: dict[str, int] = {}
        self._stopping = threading.Event()
        self._deadline = float("inf")
        self._last_response = 0.0
        self._next_send = 0.0
        self._answered = False

    def stop(self) -> None:
        """Ask :meth:`run` to close the session and return; safe from any thread."""
        self._stopping.set()

    def run(self) -> None:
        """Connect, play the device and reconnect until stopped or out of time."""
        started = time.monotonic()
        if self.options.duration is not None:
            self._deadline = started + self.options.duration
        backoff = FIRST_BACKOFF
        while not self._done():
            client = self._connect()
            try:
                self._run_session(client)
            except (_Reboot, FirmwareRebootRequired):
                self._emit("reboot", "rebooting: session closed, counter reset")
                self.counter = 0
                # The SDK waits a second before each new session.
                self._sleep(FIRST_BACKOFF)
            except CredentialsError:
                raise
            except ClientError as exc:
                if self._answered:
                    backoff = FIRST_BACKOFF
                self._emit(
                    "disconnected",
                    f"session ended: {exc}; reconnecting in {backoff:g} s",
                    error=type(exc).__name__,
                    retry_in=backoff,
                )
                self._sleep(backoff)
                backoff = min(backoff * 2, self.options.max_backoff)
        self._emit(
            "stopped",
            f"stopped after {time.monotonic() - started:.1f} s and "
            f"{self.sessions} sessions",
            sessions=self.sessions,
            sent=dict(self.sent),
        )

    # Session

    def _run_session(self, client: ObservingClient) -> None:
        self._answered = False
        try:
            client.connect()
            self.sessions += 1
            self._emit(
                "connected",
                f"DTLS session up with {client.channel.peer} ({client.cipher})",
                cipher=client.cipher,
                session=self.sessions,
            )
            self._probe(client)
            self._answered = True
            self._post_log(client, "info", f"device started, session {self.sessions}")
            self._observe_all(client)
            self._next_send = time.monotonic()
            while not self._done():
                self._step(client)
        finally:
            client.close()

    def _step(self, client: ObservingClient) -> None:
        now = time.monotonic()
        if now >= self._next_send:
            self._send_readings(client)
            self._next_send = time.monotonic() + self.interval
            return
        if now - self._last_response >= self.options.keepalive:
            self._probe(client)
            return
        due = min(
            self._next_send,
            self._last_response + self.options.keepalive,
            self._deadline,
            now + MAX_WAIT_SLICE,
        )
        for notification in client.wait(max(due - now, 0.0)):
            self._take(client, notification)

    def _observe_all(self, client: ObservingClient) -> None:
        for path, accept in ((".c", CBOR), (".d/desired", JSON), (".rpc", CBOR)):
            reply = self._call(functools.partial(client.observe, path, accept=accept))
            self._start_observation(client, path, reply)
        if self.firmware is not None:
            # The firmware reports its state before it observes the manifest.
            start = functools.partial(self.firmware.start, client, self._emit)
            self._start_observation(client, ".u/desired", self._call(start))

    def _start_observation(
        self, client: ObservingClient, path: str, reply: CoapReply
    ) -> None:
        if path not in client.observed_paths:
            self._emit(
                "warning",
                f"cannot observe {path}: {_describe(reply)}",
                path=path,
                code=reply.code.dotted,
            )
            return
        self._emit("observe", f"observing {path}", path=path)
        self._take(client, _first_notification(path, reply))

    def _take(self, client: ObservingClient, notification: Notification) -> None:
        if not notification.successful:
            self._emit(
                "warning",
                f"observation of {notification.path} ended with "
                f"{notification.code.dotted}",
                path=notification.path,
            )
            return
        if notification.path == ".c":
            self._apply_settings(client, notification)
        elif notification.path == ".d/desired":
            self._apply_desired(client, notification)
        elif notification.path == ".rpc":
            self._answer_call(client, notification)
        elif notification.path == ".u/desired" and self.firmware is not None:
            take = self.firmware.take_manifest
            self._call(functools.partial(take, client, notification, self._emit))

    # Periodic sends

    def _send_readings(self, client: ObservingClient) -> None:
        self.counter += 1
        self._post(client, ".d/counter", json.dumps(self.counter).encode(), JSON)
        self._emit("state", f"set .d/counter to {self.counter}", counter=self.counter)

        reading = {"temp": round(20 + 5 * random.random(), 2), "counter": self.counter}
        if self.counter % 2:
            body, content_format, encoding = json.dumps(reading).encode(), JSON, "JSON"
        else:
            body, content_format, encoding = cbor2.dumps(reading), CBOR, "CBOR"
        self._post(client, ".s/sensor", body, content_format)
        self._emit(
            "stream",
            f"sent .s/sensor {json.dumps(reading)} as {encoding}",
            value=reading,
            encoding=encoding,
        )

        for _ in range(self.options.logs_per_interval):
            self._post_log(client, "info", f"hello {self.counter}")

    def _post_log(self, client: ObservingClient, level: str, message: str) -> None:
        entry = {"level": level, "module": LOG_MODULE, "msg": message}
        self._post(client, ".s/logs", cbor2.dumps(entry), CBOR)
        self._emit("log", f"{level} {message}", level=level, msg=message)

    # Observed resources

    def _apply_settings(
        self, client: ObservingClient, notification: Notification
    ) -> None:
        body = _decode(notification)
        if not isinstance(body, dict) or not isinstance(body.get("settings"), dict):
            self._emit("warning", "settings notification is not a map with settings")
            return
        errors = []
        for key, value in body["settings"].items():
            status = self._apply_setting(str(key), value)
            if status is not SettingStatus.SUCCESS:
                errors.append({"setting_key": key, "error_code": int(status)})
        report: dict[str, Any] = {"version": body.get("version")}
        if errors:
            report["errors"] = errors
        self._post(client, ".c/status", cbor2.dumps(report), CBOR)
        self._emit(
            "settings",
            f"settings version {report['version']} applied, interval "
            f"{self.interval:g} s, {len(errors)} errors",
            version=report["version"],
            interval=self.interval,
            errors=errors,
        )

    def _apply_setting(self, key: str, value: Any) -> SettingStatus:
        if key != LOOP_DELAY_SETTING:
            return SettingStatus.KEY_NOT_RECOGNIZED
        if not isinstance(value, int) or isinstance(value, bool):
            return SettingStatus.VALUE_FORMAT_NOT_VALID
        low, high = LOOP_DELAY_RANGE
        if not low <= value <= high:
            return SettingStatus.VALUE_OUTSIDE_RANGE
        if value != self.interval:
            # The SDK examples wake their loop so the new delay counts now.
            self._next_send = min(self._next_send, time.monotonic() + value)
        self.interval = float(value)
        return SettingStatus.SUCCESS

    def _apply_desired(
        self, client: ObservingClient, notification: Notification
    ) -> None:
        desired = _decode(notification)
        if desired is None:
            return  # nothing is stored at .d/desired yet
        self._emit("desired", f"desired state {json.dumps(desired)}", value=desired)
        counter = desired.get("counter") if isinstance(desired, dict) else None
        if isinstance(counter, int) and not isinstance(counter, bool):
            self.counter = counter
            self._post(client, ".d/counter", json.dumps(counter).encode(), JSON)
            self._emit("state", f"set .d/counter to {counter}", counter=counter)
            # Clearing the request marks it done, so that it is applied once
            # and not again at the next session's first notification.
            self._call(lambda: client.request("DELETE", ".d/desired/counter"))

    def _answer_call(self, client: ObservingClient, notification: Notification) -> None:
        call = _decode(notification)
        if call == "OK":
            return  # the registration's acknowledgement, not a call
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            self._emit("warning", f"RPC notification is not a call: {call!r}")
            return
        method = str(call.get("method", ""))
        params = call.get("params")
        status, detail = run_method(method, params if isinstance(params, list) else [])
        reply: dict[str, Any] = {"id": call["id"], "statusCode": int(status)}
        if detail is not None:
            reply["detail"] = detail
        self._post(client, ".rpc/status", cbor2.dumps(reply), CBOR)
        self._emit(
            "rpc",
            f"call {method}{tuple(params or ())} answered {status.name}"
            + ("" if detail is None else f" {json.dumps(detail)}"),
            id=call["id"],
            method=method,
            status=status.name,
            detail=detail,
        )
        if method == "reboot" and status is RpcStatus.OK:
            raise _Reboot

    # Requests

    def _probe(self, client: ObservingClient) -> None:
        round_trip = self._call(client.probe)
        self._emit(
            "probe",
            f"probe answered in {round_trip * 1000:.1f} ms",
            round_trip_ms=round(round_trip * 1000, 2),
        )

    def _post(
        self, client: ObservingClient, path: str, body: bytes, content_format: int
    ) -> CoapReply:
        reply = self._call(
            lambda: client.request("POST", path, body, content_format=content_format)
        )
        self.sent[path] = self.sent.get(path, 0) + 1
        if not reply.successful:
            self._emit(
                "warning",
                f"POST {path} got {_describe(reply)}",
                path=path,
                code=reply.code.dotted,
            )
        return reply

    def _call(self, request: Callable[[], T]) -> T:
        result = request()
        self._last_response = time.monotonic()
        return result

    # Plumbing

    def _done(self) -> bool:
        return self._stopping.is_set() or time.monotonic() >= self._deadline

    def _sleep(self, seconds: float) -> None:
        remaining = min(seconds, self._deadline - time.monotonic())
        if remaining > 0:
            self._stopping.wait(remaining)

    def _emit(self, kind: str, message: str, **details: Any) -> None:
        event = SimulatorEvent(kind, message, details)
        log.debug("simulator %s %s", kind, message)
        self._emit_to(event)


def run_method(method: str, params: list[Any]) -> tuple[RpcStatus, Any]:
    """Run one of the simulated device's RPC methods; return its status and detail.

    ``detail`` is None for a method the device does not have, because
    the SDK sends no detail then.
    """
    if method == "multiply":
        if len(params) != 2 or not all(_is_number(value) for value in params):
            return RpcStatus.INVALID_ARGUMENT, {"error": "expected two numbers"}
        return RpcStatus.OK, {"value": params[0] * params[1]}
    if method == "echo":
        return RpcStatus.OK, {"params": params}
    if method == "reboot":
        return RpcStatus.OK, {}
    return RpcStatus.UNKNOWN, None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decode(notification: Notification) -> Any:
    if not notification.payload:
        return None
    try:
        if notification.content_format == CBOR:
            return cbor2.loads(notification.payload)
        return json.loads(notification.payload)
    except (ValueError, cbor2.CBORDecodeError):
        return None


def _describe(reply: CoapReply) -> str:
    detail = reply.payload.decode("utf-8", errors="replace") if reply.payload else ""
    return f"{reply.code.dotted} {detail}".rstrip()


def _first_notification(path: str, reply: CoapReply) -> Notification:
    return Notification(
        path=path,
        code=reply.code,
        payload=reply.payload,
        content_format=reply.content_format,
        sequence=None,
    )
