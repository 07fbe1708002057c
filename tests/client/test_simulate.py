"""The simulated SDK device against the in-process gateway.

The simulator runs in a thread and reports into a list; the tests read
those events and the store. End-to-end runs of the command are in
``tests/e2e/test_device_simulate.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from fleetgate.client.observing import ObservingClient
from fleetgate.client.simulate import (
    DeviceSimulator,
    RpcStatus,
    SettingStatus,
    SimulatorEvent,
    SimulatorOptions,
    run_method,
)
from fleetgate.store import device_logs, devices
from fleetgate.store import settings as settings_store
from gateway.conftest import (
    FAST_TRANSMISSION,
    PROJECT,
    FleetPki,
    GatewayFactory,
    GatewayThread,
)
from gateway.peers import UdpRelay, is_application_data

# Bounds every wait for an event, in seconds.
EVENT_TIMEOUT = 10.0


class RunningSimulator:
    """A :class:`DeviceSimulator` in a thread, with the events it reported."""

    def __init__(
        self, connect: Callable[[], ObservingClient], options: SimulatorOptions
    ) -> None:
        self.events: list[SimulatorEvent] = []
        self._lock = threading.Lock()
        self.simulator = DeviceSimulator(connect, self._record, options)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="simulator")
        self._thread.start()

    def _record(self, event: SimulatorEvent) -> None:
        with self._lock:
            self.events.append(event)

    def _run(self) -> None:
        try:
            self.simulator.run()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def of_kind(self, kind: str) -> list[SimulatorEvent]:
        """Return the events of ``kind`` so far."""
        with self._lock:
            return [event for event in self.events if event.kind == kind]

    def wait_for(
        self, kind: str, count: int = 1, timeout: float = EVENT_TIMEOUT
    ) -> list[SimulatorEvent]:
        """Wait until ``count`` events of ``kind`` were reported and return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of_kind(kind)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        kinds = [event.kind for event in self.events]
        raise AssertionError(f"fewer than {count} {kind!r} events in {kinds}")

    def stop(self) -> None:
        """Stop the simulator and re-raise what it raised."""
        self.simulator.stop()
        self._thread.join(EVENT_TIMEOUT)
        assert not self._thread.is_alive(), "the simulator did not stop"
        if self.error is not None:
            raise self.error


def client_factory(
    gateway: GatewayThread, pki: FleetPki, *, port: int | None = None
) -> Callable[[], ObservingClient]:
    assert gateway.identity.root_path is not None
    files = pki.device("sensor-1")
    root = gateway.identity.root_path
    target = gateway.port if port is None else port

    def connect() -> ObservingClient:
        return ObservingClient(
            "127.0.0.1",
            target,
            files.cert,
            files.key,
            root,
            timeout=1.0,
            transmission=FAST_TRANSMISSION,
        )

    return connect


def stop_serving(gateway: GatewayThread) -> None:
    """Stop the gateway's listener, closing its sessions, but not its loop."""
    future = asyncio.run_coroutine_threadsafe(gateway.gateway.stop(), gateway.loop)
    future.result(EVENT_TIMEOUT)


def start_again(start_gateway: GatewayFactory, port: int) -> GatewayThread:
    """Start a gateway on ``port`` once the stopped one has released it."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    while True:
        try:
            return start_gateway(port=port)
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def simulators() -> Iterator[list[RunningSimulator]]:
    started: list[RunningSimulator] = []
    yield started
    for running in started:
        running.stop()


@pytest.fixture
def start(
    simulators: list[RunningSimulator],
) -> Callable[..., RunningSimulator]:
    def start_simulator(
        connect: Callable[[], ObservingClient], **options: float
    ) -> RunningSimulator:
        running = RunningSimulator(connect, SimulatorOptions(**options))  # type: ignore[arg-type]
        simulators.append(running)
        return running

    return start_simulator


class TestSession:
    def test_session_starts_with_probe_then_observes(
        self,
        gateway: GatewayThread,
        pki: FleetPki,
        start: Callable[..., RunningSimulator],
    ) -> None:
        running = start(client_factory(gateway, pki), interval=30)
        running.wait_for("observe", 3)
        kinds = [event.kind for event in running.events]
        assert kinds[:2] == ["connected", "probe"]
        paths = [event.details["path"] for event in running.of_kind("observe")]
        assert paths == [".c", ".d/desired", ".rpc"]

    def test_idle_session_is_probed(
        self,
        gateway: GatewayThread,
        pki: FleetPki,
        start: Callable[..., RunningSimulator],
    ) -> None:
        running = start(client_factory(gateway, pki), interval=30, keepalive=0.3)
        running.wait_for("probe", 3)
        assert running.of_kind("disconnected") == []

    def test_unanswered_request_ends_session(
        self,
        gateway: GatewayThread,
        pki: FleetPki,
        start: Callable[..., RunningSimulator],
    ) -> None:
        relay = UdpRelay(gateway.port)
        try:
            running = start(
                client_factory(gateway, pki, port=relay.port),
                interval=30,
                keepalive=0.3,
            )
            running.wait_for("observe", 3)
            # A first attempt that failed on a loaded machine also reports
            # "disconnected", so wait for the events after the drop starts.
            disconnects = len(running.of_kind("disconnected"))
            connects = len(running.of_kind("connected"))
            relay.drop_to_client = lambda index, datagram: is_application_data(datagram)
            lost = running.wait_for("disconnected", disconnects + 1)[-1]
            relay.drop_to_client = None
            running.wait_for("connected", connects + 1)
            running.wait_for("observe", 6)
        finally:
            relay.close()
        assert lost.details["error"] == "RequestTimeout"

    def test_gateway_restart_is_survived(
        self,
        start_gateway: GatewayFactory,
        pki: FleetPki,
        start: Callable[..., RunningSimulator],
    ) -> None:
        first = start_gateway()
        port = first.port
        running = start(client_factory(first, pki), interval=30, max_backoff=1)
        running.wait_for("observe", 3)

        disconnects = len(running.of_kind("disconnected"))
        stop_serving(first)
        lost = running.wait_for("disconnected", disconnects + 1)[-1]
        second = start_again(start_gateway, port)
        running.wait_for("observe", 6)
        count = second.call(lambda: second.gateway.endpoint.observers.count)

        assert lost.details["error"] == "SessionClosed"
        assert count == 3

    def test_back_off_doubles_while_unreachable(
        self,
        start_gateway: GatewayFactory,
        pki: FleetPki,
        start: Callable[..., RunningSimulator],
    ) -> None:
        gateway = start_gateway()
        running = start(client_factory(gateway, pki), interval=30, max_backoff=2)
        running.wait_for("observe", 3)
        stop_serving(gateway)
        lost = running.wait_for("disconnected", 3, timeout=15)
        waits = [event.details["retry_in"] for event in lost]
        # The first wait is short because the session had been answered.
        assert waits[:3] == [1.0, 2.0, 2.0]


class TestSettings:
    def test_loop_delay_sets_interval(
        self,
        gateway: GatewayThread,
        pki: FleetPki,
        start: Callable[..., RunningSimulator],
    ) -> None:
        settings_store.replace_project_settings(pki.db, PROJECT, {"LOOP_DELAY_S": 7})
        running = start(client_factory(gateway, pki), interval=30)
        applied = running.wait_for("settings")[0]
        assert applied.details["interval"] == 7
        assert applied.details["errors"] == []

    @pytest.mark.parametrize(
        ("settings", "status"),
        [
            pytest.param(
                {"LOOP_DELAY_S": 500},
                SettingStatus.VALUE_OUTSIDE_RANGE,
                id="fail/range",
            ),
            pytest.param(
                {"LOOP_DELAY_S": "5"},
                SettingStatus.VALUE_FORMAT_NOT_VALID,
                id="fail/text",
            ),
            pytest.param(
                {"COLOR": "red"}, SettingStatus.KEY_NOT_RECOGNIZED, id="fail/unknown"
            ),
        ],
    )
    def test_rejected_setting_is_reported(
        self,
        gateway: GatewayThread,
        pki: FleetPki,
        start: Callable[..., RunningSimulator],
        settings: dict[str, object],
        status: SettingStatus,
    ) -> None:
        settings_store.replace_project_settings(pki.db, PROJECT, settings)
        running = start(client_factory(gateway, pki), interval=30)
        applied = running.wait_for("settings")[0]
        running.wait_for("observe", 3)
        device = devices.list_devices(pki.db, PROJECT, exact_name="sensor-1").items[0]
        logs = device_logs.list_log_entries(pki.db, PROJECT, device.id).items
        reports = [entry for entry in logs if entry.module == "settings"]

        assert applied.details["interval"] == 30
        assert applied.details["errors"] == [
            {"setting_key": next(iter(settings)), "error_code": int(status)}
        ]
        assert [entry.level for entry in reports] == ["warn"]


class TestMethods:
    def test_multiply(self) -> None:
        assert run_method("multiply", [6, 7]) == (RpcStatus.OK, {"value": 42})

    @pytest.mark.parametrize("params", [[6], [6, "7"], [True, 2]], ids=str)
    def test_multiply_needs_two_numbers(self, params: list[object]) -> None:
        status, _ = run_method("multiply", params)
        assert status is RpcStatus.INVALID_ARGUMENT

    def test_echo_returns_params(self) -> None:
        assert run_method("echo", ["a", 1]) == (RpcStatus.OK, {"params": ["a", 1]})

    def test_unknown_method_has_no_detail(self) -> None:
        assert run_method("self_destruct", []) == (RpcStatus.UNKNOWN, None)
