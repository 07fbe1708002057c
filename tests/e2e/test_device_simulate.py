"""``fleetgate device simulate`` against the real ``fleetgate serve``.

Both run as subprocesses on loopback. The simulator prints JSON lines
(``--json``), which a reader thread collects, and the management API
shows what reached the server: logs, stream records, state, settings
reports and RPC results.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import RunningServer, fleetgate, start_server, stop_server
from .device_pki import DeviceFiles, register_fleet

pytestmark = [pytest.mark.e2e]

PROJECT = "acme-sensors"
# Bounds every wait for a simulator event or exit, in seconds.
EVENT_TIMEOUT = 20.0


# One device per test, so that tests sharing the server do not meet.
CERT_IDS = [
    "sensor-logs",
    "sensor-settings",
    "sensor-rpc",
    "sensor-desired",
    "sensor-flood",
    "sensor-sigterm",
    "sensor-ota",
]


@dataclasses.dataclass(frozen=True)
class Fleet:
    """A running server, its project's devices and an API client."""

    server: RunningServer
    devices: dict[str, DeviceFiles]
    api: httpx.Client

    def device_path(self, certificate_id: str) -> str:
        """Return the API path of the device with ``certificate_id``."""
        response = self.api.get(
            f"/v1/projects/{PROJECT}/devices", params={"deviceName": certificate_id}
        )
        identifier = response.json()["list"][0]["id"]
        return f"/v1/projects/{PROJECT}/devices/{identifier}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One server for the module, because each start takes seconds."""
    folder = tmp_path_factory.mktemp("simulate")
    server = start_server(folder / "data")
    try:
        issued = register_fleet(server.data_dir, folder / "pki", PROJECT, CERT_IDS)
        key = fleetgate(server.data_dir, "apikey", "create", "--project", PROJECT)
        assert server.api_url is not None
        headers = {"x-api-key": key.stdout.strip()}
        with httpx.Client(base_url=server.api_url, headers=headers, timeout=30) as api:
            yield Fleet(server, {files.certificate_id: files for files in issued}, api)
    finally:
        stop_server(server)


def simulate_command(server: RunningServer, *arguments: str) -> list[str]:
    """Return the command line of ``fleetgate device simulate`` aimed at ``server``."""
    return [
        sys.executable,
        "-m",
        "fleetgate",
        "device",
        "simulate",
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--server-ca",
        str(server.server_ca),
        *arguments,
    ]


class Simulator:
    """A ``fleetgate device simulate --json`` subprocess and its events."""

    def __init__(self, server: RunningServer, *arguments: str) -> None:
        command = simulate_command(server, "--json", *arguments)
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, kind: str, since: int = 0, **fields: Any) -> dict[str, Any]:
        """Return the first event of ``kind`` with ``fields``, waiting for it.

        Only events at index ``since`` or later count.
        """
        for index, event in enumerate(self._all_events()):
            if index >= since and event["event"] == kind and _matches(event, fields):
                return event
        raise AssertionError(
            f"no {kind!r} event with {fields} in {[e['event'] for e in self.events]}"
        )

    def finish(self) -> int:
        """Wait for the simulator to exit and return its exit status."""
        try:
            status = self.process.wait(timeout=EVENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise
        self._reader.join(EVENT_TIMEOUT)
        list(self._all_events())
        return status

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Return the events of ``kind`` read so far."""
        return [event for event in self.events if event["event"] == kind]

    def _all_events(self) -> Iterator[dict[str, Any]]:
        yield from list(self.events)
        deadline = time.monotonic() + EVENT_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                return
            if line is None:
                self._lines.put(None)  # keep the end visible to later calls
                return
            event = json.loads(line)
            self.events.append(event)
            yield event

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def simulators() -> Iterator[list[Simulator]]:
    started: list[Simulator] = []
    yield started
    for simulator in started:
        simulator.kill()


def simulate(
    simulators: list[Simulator], fleet: Fleet, certificate_id: str, *options: str
) -> Simulator:
    device = fleet.devices[certificate_id]
    credentials = ("--cert", str(device.cert), "--key", str(device.key))
    running = Simulator(fleet.server, *credentials, *options)
    simulators.append(running)
    return running


def _matches(event: dict[str, Any], fields: dict[str, Any]) -> bool:
    return all(event.get(name) == value for name, value in fields.items())


def test_simulator_sends_logs_state_and_stream(
    fleet: Fleet, simulators: list[Simulator]
) -> None:
    options = ("--duration", "2.5", "--interval", "0.5")
    simulator = simulate(simulators, fleet, "sensor-logs", *options)
    status = simulator.finish()
    counters = [event["counter"] for event in simulator.of_kind("state")]
    base = fleet.device_path("sensor-logs")
    logs = fleet.api.get(f"{base}/logs").json()["list"]
    stream = fleet.api.get(f"{base}/stream").json()["list"]
    counter = fleet.api.get(f"{base}/data/counter").json()["data"]

    assert status == 0
    assert [e["event"] for e in simulator.events[:2]] == ["connected", "probe"]
    assert simulator.of_kind("disconnected") == []
    assert simulator.events[-1]["event"] == "stopped"
    assert "hello 1" in [entry["message"] for entry in logs]
    assert {entry["module"] for entry in logs} == {"simulator", "settings"}
    assert len(stream) == len(simulator.of_kind("stream"))
    assert stream[-1]["data"]["sensor"]["counter"] == 1
    assert counter == counters[-1]


def test_settings_change_reaches_simulator(
    fleet: Fleet, simulators: list[Simulator]
) -> None:
    options = ("--duration", "6", "--interval", "30")
    simulator = simulate(simulators, fleet, "sensor-settings", *options)
    simulator.wait_for("observe", path=".rpc")
    base = fleet.device_path("sensor-settings")
    body = {"settings": {"LOOP_DELAY_S": 1}}
    response = fleet.api.put(f"{base}/settings", json=body)
    applied = simulator.wait_for("settings", interval=1.0)
    first = simulator.wait_for("state", counter=2)
    second = simulator.wait_for("state", counter=3)
    simulator.finish()
    logs = fleet.api.get(f"{base}/logs").json()["list"]
    reports = [entry["message"] for entry in logs if entry["module"] == "settings"]
    version = response.json()["data"]["version"]

    assert response.status_code == 200
    assert applied["version"] == version
    assert applied["errors"] == []
    assert elapsed(first, second) == pytest.approx(1.0, abs=0.4)
    assert f"settings version {version} applied" in reports


def test_rpc_call_answered_by_simulator(
    fleet: Fleet, simulators: list[Simulator]
) -> None:
    options = ("--duration", "10", "--interval", "30")
    simulator = simulate(simulators, fleet, "sensor-rpc", *options)
    simulator.wait_for("observe", path=".rpc")
    path = f"{fleet.device_path('sensor-rpc')}/rpc"
    multiply = fleet.api.post(path, json={"method": "multiply", "params": [6, 7]})
    unknown = fleet.api.post(path, json={"method": "self_destruct"})
    reboot = fleet.api.post(path, json={"method": "reboot"})
    simulator.wait_for("reboot")
    since = len(simulator.events)
    simulator.wait_for("observe", since=since, path=".rpc")
    echo = fleet.api.post(path, json={"method": "echo", "params": ["hi"]})
    simulator.process.send_signal(signal.SIGTERM)
    simulator.finish()

    assert multiply.json()["data"]["statusCode"] == 0
    assert multiply.json()["data"]["detail"] == {"value": 42}
    assert unknown.json()["data"]["statusCode"] == 2
    assert reboot.json()["data"]["statusCode"] == 0
    assert simulator.wait_for("connected", session=2)
    assert echo.json()["data"]["detail"] == {"params": ["hi"]}


def test_desired_counter_is_applied_once(
    fleet: Fleet, simulators: list[Simulator]
) -> None:
    options = ("--duration", "6", "--interval", "30")
    simulator = simulate(simulators, fleet, "sensor-desired", *options)
    simulator.wait_for("observe", path=".d/desired")
    base = f"{fleet.device_path('sensor-desired')}/data"
    written = fleet.api.post(f"{base}/desired", json={"counter": 100})
    simulator.wait_for("state", counter=100)
    simulator.wait_for("desired", value={})
    simulator.process.send_signal(signal.SIGTERM)
    simulator.finish()
    counter = fleet.api.get(f"{base}/counter").json()["data"]
    desired = fleet.api.get(f"{base}/desired").json()["data"]

    assert written.status_code == 200
    assert counter == 100
    assert desired == {}


def test_flooding_device_is_slowed(fleet: Fleet, simulators: list[Simulator]) -> None:
    # Many logs per reading, so that only the log limit is reached.
    options = ("--duration", "3", "--interval", "0.5", "--logs-per-interval", "200")
    simulator = simulate(simulators, fleet, "sensor-flood", *options)
    status = simulator.finish()
    stopped = simulator.wait_for("stopped")
    path = f"{fleet.device_path('sensor-flood')}/logs"
    stored = fleet.api.get(path, params={"perPage": 1}).json()["total"]
    posted = stopped["sent"][".s/logs"]
    # The gateway's log limit: bursts of 50, then 20 entries per second,
    # over the 3 s run with 2 s to spare; the settings report adds one.
    limit = 50 + 20 * 5 + 1

    assert status == 0
    assert simulator.of_kind("disconnected") == []
    assert simulator.of_kind("warning") == []
    assert posted > limit
    assert stored <= limit
    assert fleet.server.process.poll() is None


def test_sigterm_stops_simulator_cleanly(
    fleet: Fleet, simulators: list[Simulator]
) -> None:
    simulator = simulate(simulators, fleet, "sensor-sigterm", "--interval", "30")
    simulator.wait_for("observe", path=".rpc")
    simulator.process.send_signal(signal.SIGTERM)

    assert simulator.finish() == 0
    assert simulator.events[-1]["event"] == "stopped"


def test_ota_update_reaches_simulator(
    fleet: Fleet, simulators: list[Simulator]
) -> None:
    image = bytes(range(256)) * 20  # five 1024-byte blocks
    uploaded = fleet.api.post(
        f"/v1/projects/{PROJECT}/artifacts",
        params={"package": "main", "version": "1.1.0"},
        content=image,
        headers={"content-type": "application/octet-stream"},
    )
    artifact = uploaded.json()["data"]["id"]
    release = fleet.api.post(
        f"/v1/projects/{PROJECT}/releases",
        json={"name": "1.1.0", "artifactIds": [artifact]},
    ).json()["data"]["id"]
    options = ("--duration", "8", "--interval", "30", "--firmware-version", "1.0.0")
    simulator = simulate(simulators, fleet, "sensor-ota", *options)
    simulator.wait_for("observe", path=".u/desired")
    base = fleet.device_path("sensor-ota")
    identifier = base.rsplit("/", 1)[1]
    rollout = fleet.api.post(
        f"/v1/projects/{PROJECT}/releases/{release}/rollout",
        json={"deviceIds": [identifier]},
    )
    simulator.wait_for("ota", state="idle", version="1.1.0")
    simulator.process.send_signal(signal.SIGTERM)
    simulator.finish()
    reports = [
        (event["state"], event["reason"], event["version"])
        for event in simulator.of_kind("ota")
        if "state" in event
    ]
    downloaded = simulator.wait_for("ota", size=len(image))
    firmware = fleet.api.get(f"{base}/firmware").json()["data"]

    assert uploaded.status_code == 200
    assert rollout.status_code == 200
    assert reports == [
        ("idle", "ready", "1.0.0"),
        ("downloading", "ready", "1.0.0"),
        ("downloaded", "ready", "1.0.0"),
        ("updating", "ready", "1.0.0"),
        ("updating", "firmware_updated_successfully", "1.1.0"),
        ("idle", "ready", "1.1.0"),
    ]
    assert downloaded["version"] == "1.1.0"
    assert firmware["components"][0]["currentVersion"] == "1.1.0"
    assert firmware["components"][0]["stateName"] == "idle"


def test_server_ca_from_api_is_data_dir_file(fleet: Fleet) -> None:
    response = fleet.api.get("/v1/server-ca")

    assert response.status_code == 200
    assert response.content == fleet.server.server_ca.read_bytes()


def test_psk_device_is_simulated(fleet: Fleet, simulators: list[Simulator]) -> None:
    data_dir = fleet.server.data_dir
    identity = f"sensor-psk@{PROJECT}"
    fleetgate(data_dir, "device", "create", "--project", PROJECT, "sensor-psk")
    # Through the API the running gateway loads the credential at once; one
    # added from the command line is picked up at its next reload.
    added = fleet.api.post(
        f"{fleet.device_path('sensor-psk')}/credentials", json={"identity": identity}
    )
    added.raise_for_status()
    key = added.json()["data"]["preSharedKey"]
    credentials = ("--psk-id", identity, "--psk", key)
    options = ("--duration", "2", "--interval", "0.5")
    simulator = Simulator(fleet.server, *credentials, *options)
    simulators.append(simulator)
    status = simulator.finish()
    connected = simulator.wait_for("connected")
    base = fleet.device_path("sensor-psk")
    stream = fleet.api.get(f"{base}/stream").json()["list"]

    assert status == 0
    assert "PSK" in connected["cipher"]
    assert simulator.of_kind("disconnected") == []
    assert len(stream) == len(simulator.of_kind("stream"))


def test_psk_that_is_not_hex_is_rejected(fleet: Fleet) -> None:
    secret = "not-hex-secret"
    command = simulate_command(
        fleet.server, "--psk-id", f"sensor-psk@{PROJECT}", "--psk", secret
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)

    assert result.returncode == 1
    assert "must be hex digits" in result.stderr
    assert secret not in result.stderr


def elapsed(first: dict[str, Any], second: dict[str, Any]) -> float:
    """Seconds between the times of two events."""
    start = dt.datetime.fromisoformat(first["time"])
    end = dt.datetime.fromisoformat(second["time"])
    return (end - start).total_seconds()
