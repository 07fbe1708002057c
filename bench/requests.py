"""Time CoAP requests and Observe fan-out on fleetgate serve against libcoap's server.

Run by hand: ``python bench/requests.py [--clients N] [--seconds S]
[--observers M]``. It needs ``coap-server-openssl`` (Debian
libcoap3-bin) on the PATH.

Requests: N client processes on loopback each open one DTLS session
and repeat a confirmable GET, then a confirmable POST of a small JSON
value, on ``.d/bench`` for S seconds each. Fleetgate reads and writes
the device's LightDB State in its store; ``coap-server-openssl -d``
serves the same path as a resource it created on the first POST. Both
servers get the same certificates, as in ``handshake.py``. The figures
are requests per second over all clients, latency per request, and
server CPU per request from /proc/<pid>/stat. The same clients then
time ``udp_echo.py``, a bare asyncio UDP echo with no DTLS and no CoAP:
the floor of any server built on asyncio's datagram transport.

Observe fan-out: M observers of ``.d/fan`` on one device, 16 per
session (Fleetgate's limit per session), spread over N client
processes. One change through the management API (a PUT of the
value) must reach every observer. The figures are the time from the
start of that PUT until each notification arrives, and the server CPU
per notification. libcoap keeps one observation per session and
resource, so it gets one observer on each of as many sessions, and its
change is a PUT over one more session.

Servers and clients share the machine, so absolute figures move with
the load. The ratios to libcoap, measured in the same run, are the
stable result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from OpenSSL import SSL

from fleetgate.client import ClientError, DeviceCredentials, DtlsChannel
from fleetgate.client import build_client_context as client_context
from fleetgate.config import Settings
from fleetgate.store import apikeys, devices
from fleetgate.store.audit import CLI_ACTOR
from fleetgate.store.database import Database

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handshake  # noqa: E402  (a sibling script, not a package)

CLIENT_TIMEOUT = handshake.CLIENT_TIMEOUT
MAX_REQUESTS_PER_CLIENT = 500_000
MAX_FAILURES = 50
# Fleetgate's MAX_OBSERVATIONS_PER_SESSION.
OBSERVERS_PER_SESSION = 16
# Seconds the observers wait for the notifications of one change.
FAN_OUT_TIMEOUT = 120.0
CHANGE_PATH = ("fan",)
REQUEST_PATH = ".d/bench"
# About the size of the DTLS record of a confirmable GET on .d/bench.
ECHO_DATAGRAM_BYTES = 40
CIPHERS = "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:@SECLEVEL=0"


@dataclasses.dataclass(frozen=True)
class RequestJob:
    """The work of one client process in the request part."""

    credentials: DeviceCredentials
    port: int
    method: str
    start_at: float
    end_at: float


@dataclasses.dataclass(frozen=True)
class RequestReport:
    """Measurements of one client process in the request part."""

    latencies: list[float]
    failures: int
    finished_at: float
    codes: dict[str, int]


def coap_request(
    channel: DtlsChannel,
    method: Code,
    path: str,
    mid: int,
    payload: bytes = b"",
    *,
    observe: int | None = None,
    token: bytes | None = None,
) -> Message:
    """Send one confirmable request and return its piggybacked response."""
    message = Message(code=method, payload=payload)
    message.mtype = Type.CON
    message.mid = mid
    message.token = mid.to_bytes(2, "big") if token is None else token
    message.opt.uri_path = tuple(path.split("/"))
    if payload:
        message.opt.content_format = 50  # JSON
    if observe is not None:
        message.opt.observe = observe
    channel.send(message.encode())
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        record = channel.receive(remaining)
        if record is None:
            break
        reply = Message.decode(record)
        if reply.mtype is Type.ACK and reply.mid == mid:
            return reply
    raise TimeoutError(
        f"no response to {method.name} /{path} within {CLIENT_TIMEOUT} s"
    )


def run_requests(job: RequestJob) -> RequestReport:
    """Repeat one request over one session until the job's end, in a process."""
    method = Code.GET if job.method == "GET" else Code.POST
    channel = DtlsChannel(
        client_context(job.credentials, ciphers=CIPHERS), "127.0.0.1", job.port
    )
    latencies: list[float] = []
    codes: dict[str, int] = {}
    failures = 0
    channel.connect(CLIENT_TIMEOUT)
    try:
        # Associates the device on Fleetgate and creates the resource on libcoap.
        coap_request(channel, Code.POST, REQUEST_PATH, 1, b'{"n":0}')
        while time.monotonic() < job.start_at:
            time.sleep(0.001)
        while (
            len(latencies) < MAX_REQUESTS_PER_CLIENT and time.monotonic() < job.end_at
        ):
            mid = (len(latencies) + failures + 2) & 0xFFFF
            payload = b"" if method is Code.GET else b'{"n":%d}' % mid
            sent = time.monotonic()
            try:
                reply = coap_request(channel, method, REQUEST_PATH, mid, payload)
            except (ClientError, TimeoutError, SSL.Error):
                failures += 1
                if failures >= MAX_FAILURES:
                    break
                continue
            latencies.append(time.monotonic() - sent)
            codes[str(reply.code)] = codes.get(str(reply.code), 0) + 1
    finally:
        channel.close()
    return RequestReport(latencies, failures, time.monotonic(), codes)


def run_echo(job: RequestJob) -> RequestReport:
    """Repeat a datagram of a CoAP GET's size to the UDP echo until the job's end."""
    latencies: list[float] = []
    failures = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(CLIENT_TIMEOUT)
        sock.connect(("127.0.0.1", job.port))
        datagram = bytes(ECHO_DATAGRAM_BYTES)
        while time.monotonic() < job.start_at:
            time.sleep(0.001)
        while (
            len(latencies) < MAX_REQUESTS_PER_CLIENT and time.monotonic() < job.end_at
        ):
            sent = time.monotonic()
            try:
                sock.send(datagram)
                sock.recv(ECHO_DATAGRAM_BYTES * 2)
            except TimeoutError:
                failures += 1
                if failures >= MAX_FAILURES:
                    break
                continue
            latencies.append(time.monotonic() - sent)
    codes = {"echoed": len(latencies)}
    return RequestReport(latencies, failures, time.monotonic(), codes)


def start_echo(log_path: Path) -> handshake.Server:
    """Start ``udp_echo.py`` and return it once it has printed its port."""
    script = Path(__file__).resolve().parent / "udp_echo.py"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=log
        )
    assert process.stdout is not None
    ready = selectors.DefaultSelector()
    ready.register(process.stdout, selectors.EVENT_READ)
    if not ready.select(timeout=CLIENT_TIMEOUT * 5):
        process.kill()
        raise RuntimeError(f"the UDP echo did not start, see {log_path}")
    port = int(process.stdout.readline())
    return handshake.Server("asyncio UDP echo", process, port, str(script))


@dataclasses.dataclass(frozen=True)
class RequestResult:
    """Request figures of one server and one method."""

    name: str
    method: str
    latencies: list[float]
    failures: int
    seconds: float
    cpu_seconds: float
    codes: dict[str, int]

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return len(self.latencies) / self.seconds

    @property
    def cpu_us(self) -> float:
        """Server CPU per request, in microseconds."""
        return self.cpu_seconds / max(len(self.latencies), 1) * 1e6


def measure_requests(
    server: handshake.Server,
    pool: multiprocessing.pool.Pool,
    pki: handshake.BenchPki,
    clients: int,
    seconds: float,
    method: str,
    cpu: Callable[[], float] | None = None,
    runner: Callable[[RequestJob], RequestReport] = run_requests,
) -> RequestResult:
    """Run ``clients`` request loops of ``method`` against ``server``."""
    cpu_seconds = server.cpu_seconds if cpu is None else cpu
    start_at = time.monotonic() + 2.0  # time to connect before the window
    jobs = [
        RequestJob(
            pki.devices[index], server.port, method, start_at, start_at + seconds
        )
        for index in range(clients)
    ]
    pending = pool.map_async(runner, jobs)
    time.sleep(max(start_at - time.monotonic(), 0.0))
    cpu_before = cpu_seconds()
    reports: list[RequestReport] = pending.get(timeout=seconds + 60)
    cpu_after = cpu_seconds()
    codes: dict[str, int] = {}
    for report in reports:
        for code, count in report.codes.items():
            codes[code] = codes.get(code, 0) + count
    finished = max(report.finished_at for report in reports)
    return RequestResult(
        name=server.name,
        method=method,
        latencies=[value for report in reports for value in report.latencies],
        failures=sum(report.failures for report in reports),
        seconds=finished - start_at,
        cpu_seconds=cpu_after - cpu_before,
        codes=codes,
    )


@dataclasses.dataclass(frozen=True)
class ObserveJob:
    """Sessions and observers that one client process holds."""

    credentials: DeviceCredentials
    port: int
    sessions: int
    observers: int
    per_session: int


def hold_observers(
    job: ObserveJob, pipe: multiprocessing.connection.Connection
) -> None:
    """Register observers, report ready, then time the notifications that arrive."""
    context = client_context(job.credentials, ciphers=CIPHERS)
    channels: list[DtlsChannel] = []
    selector = selectors.DefaultSelector()
    path = ".d/" + "/".join(CHANGE_PATH)
    try:
        registered = 0
        for index in range(job.sessions):
            channel = DtlsChannel(context, "127.0.0.1", job.port)
            channel.connect(CLIENT_TIMEOUT)
            channels.append(channel)
            selector.register(channel.fileno(), selectors.EVENT_READ, channel)
            for slot in range(job.per_session):
                if registered >= job.observers:
                    break
                token = (index * job.per_session + slot).to_bytes(4, "big")
                reply = coap_request(
                    channel, Code.GET, path, slot + 1, observe=0, token=token
                )
                if reply.opt.observe is None:
                    raise RuntimeError(f"observation not registered: {reply.code}")
                registered += 1
        pipe.send(("ready", registered))
        if not pipe.poll(FAN_OUT_TIMEOUT):
            raise RuntimeError("no change announced")
        pipe.recv()
        pipe.send(("arrivals", receive_notifications(selector, registered)))
    except Exception as exc:  # reported to the parent, which prints it
        pipe.send(("error", repr(exc)))
    finally:
        for channel in channels:
            channel.close()


def receive_notifications(
    selector: selectors.BaseSelector, expected: int
) -> list[float]:
    """Return the arrival time of each notification, until ``expected`` came."""
    arrivals: list[float] = []
    deadline = time.monotonic() + FAN_OUT_TIMEOUT
    while len(arrivals) < expected and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            channel: DtlsChannel = key.data
            while (record := channel.receive(0)) is not None:
                arrived = time.monotonic()
                message = Message.decode(record)
                if message.opt.observe is None or not message.code.is_successful():
                    continue
                arrivals.append(arrived)
                if message.mtype is Type.CON:
                    ack = Message(code=Code.EMPTY)
                    ack.mtype, ack.mid = Type.ACK, message.mid
                    channel.send(ack.encode())
    return arrivals


@dataclasses.dataclass(frozen=True)
class FanOutResult:
    """Figures of one change fanned out to every observer."""

    name: str
    sessions: int
    observers: int
    latencies: list[float]
    cpu_seconds: float

    @property
    def cpu_us(self) -> float:
        """Server CPU per notification, in microseconds."""
        return self.cpu_seconds / max(len(self.latencies), 1) * 1e6


def measure_fan_out(
    server: handshake.Server,
    credentials: DeviceCredentials,
    clients: int,
    observers: int,
    change: Callable[[], None],
    *,
    per_session: int = OBSERVERS_PER_SESSION,
    cpu: Callable[[], float] | None = None,
) -> FanOutResult:
    """Register ``observers`` over ``clients`` processes, change once, time it."""
    cpu_seconds = server.cpu_seconds if cpu is None else cpu
    sessions = -(-observers // per_session)
    spawn = multiprocessing.get_context("spawn")
    pipes = []
    processes = []
    remaining_sessions, remaining_observers = sessions, observers
    for index in range(clients):
        share = -(-remaining_sessions // (clients - index))
        observers_here = min(share * per_session, remaining_observers)
        remaining_sessions -= share
        remaining_observers -= observers_here
        parent, child = spawn.Pipe()
        job = ObserveJob(credentials, server.port, share, observers_here, per_session)
        process = spawn.Process(target=hold_observers, args=(job, child))
        process.start()
        pipes.append(parent)
        processes.append(process)
    try:
        registered = 0
        for pipe in pipes:
            if not pipe.poll(FAN_OUT_TIMEOUT):
                raise RuntimeError("observers were not registered in time")
            kind, value = pipe.recv()
            if kind != "ready":
                raise RuntimeError(f"observer client failed: {value}")
            registered += value
        time.sleep(0.5)
        cpu_before = cpu_seconds()
        for pipe in pipes:
            pipe.send("go")
        started = time.monotonic()
        change()
        arrivals: list[float] = []
        for pipe in pipes:
            if not pipe.poll(FAN_OUT_TIMEOUT + 10):
                raise RuntimeError("observer client did not report")
            kind, value = pipe.recv()
            if kind != "arrivals":
                raise RuntimeError(f"observer client failed: {value}")
            arrivals.extend(value)
        cpu_after = cpu_seconds()
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return FanOutResult(
        server.name,
        sessions,
        registered,
        sorted(arrival - started for arrival in arrivals),
        cpu_after - cpu_before,
    )


def api_change(api_url: str, api_key: str, device_id: str) -> Callable[[], None]:
    """Return a function that sets the observed value through the API."""
    url = f"{api_url}/v1/projects/{handshake.PROJECT}/devices/{device_id}/data/"
    url += "/".join(CHANGE_PATH)
    # One client for every change, as a management tool would keep: a new
    # httpx client loads its TLS trust store, about 24 ms that would count
    # as the server's.
    client = httpx.Client(
        headers={"x-api-key": api_key, "content-type": "application/json"},
        timeout=30,
    )

    def change() -> None:
        response = client.put(url, content=json.dumps({"at": time.time()}))
        response.raise_for_status()

    # FastAPI builds a route's dependencies on its first request, and the
    # client opens its connection; both stay out of the timed change.
    change()
    return change


def coap_change(port: int, credentials: DeviceCredentials) -> Callable[[], None]:
    """Return a function that sets the observed value with a CoAP PUT."""
    channel = DtlsChannel(
        client_context(credentials, ciphers=CIPHERS), "127.0.0.1", port
    )
    channel.connect(CLIENT_TIMEOUT)
    path = ".d/" + "/".join(CHANGE_PATH)

    def change() -> None:
        try:
            coap_request(channel, Code.PUT, path, 7, b'{"at":1}')
        finally:
            channel.close()

    return change


def prepare_observed(
    server: handshake.Server, credentials: DeviceCredentials, *, method: Code
) -> None:
    """Create the observed value, so that every observer starts on 2.05."""
    channel = DtlsChannel(
        client_context(credentials, ciphers=CIPHERS), "127.0.0.1", server.port
    )
    channel.connect(CLIENT_TIMEOUT)
    try:
        coap_request(channel, method, ".d/" + "/".join(CHANGE_PATH), 3, b'{"at":0}')
    finally:
        channel.close()


def print_requests(results: list[RequestResult]) -> None:
    header = f"{'server':<20} {'method':<6} {'requests':>8} {'fail':>4}"
    header += f" {'per s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>7}  codes"
    print(header)
    for result in results:
        p50 = handshake.percentile(result.latencies, 0.50) * 1e3
        p99 = handshake.percentile(result.latencies, 0.99) * 1e3
        line = f"{result.name:<20} {result.method:<6} {len(result.latencies):>8}"
        line += f" {result.failures:>4} {result.rate:>7.0f} {p50:>7.2f} {p99:>7.2f}"
        line += f" {result.cpu_us:>7.0f}  {result.codes}"
        print(line)


def print_fan_out(results: list[FanOutResult]) -> None:
    header = f"{'server':<20} {'sessions':>8} {'observers':>9} {'arrived':>7}"
    header += f" {'first ms':>8} {'p50 ms':>8}"
    header += f" {'p99 ms':>8} {'max ms':>8} {'cpu us':>7}"
    print(header)
    for result in results:
        values = result.latencies
        first = min(values, default=float("nan")) * 1e3
        p50 = handshake.percentile(values, 0.50) * 1e3
        p99 = handshake.percentile(values, 0.99) * 1e3
        longest = max(values, default=float("nan")) * 1e3
        line = f"{result.name:<20} {result.sessions:>8} {result.observers:>9}"
        line += f" {len(values):>7} {first:>8.1f}"
        line += f" {p50:>8.1f} {p99:>8.1f} {longest:>8.1f} {result.cpu_us:>7.1f}"
        print(line)


def make_admin_key(pki: handshake.BenchPki) -> str:
    """Create an admin API key in the bench store and return its secret."""
    db = Database.open(Settings(data_dir=pki.data_dir).resolved_database_url)
    try:
        return apikeys.create_api_key(db, None, name="bench", actor=CLI_ACTOR).secret
    finally:
        db.dispose()


def find_device_id(pki: handshake.BenchPki, certificate_id: str) -> str:
    """Return the ID of the device that a certificate ID named on first connection."""
    db = Database.open(Settings(data_dir=pki.data_dir).resolved_database_url)
    try:
        return devices.find_device(db, handshake.PROJECT, certificate_id).id
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clients", type=int, default=4, help="Number of client processes."
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="Duration of each timed run."
    )
    parser.add_argument(
        "--observers", type=int, default=10_000, help="Observers of the changed value."
    )
    parser.add_argument(
        "--skip-requests", action="store_true", help="Run the Observe part only."
    )
    options = parser.parse_args()
    binary = shutil.which("coap-server-openssl")
    if binary is None:
        parser.error("coap-server-openssl not found; install Debian libcoap3-bin")
    if not 1 <= options.clients <= 64:
        parser.error("--clients must be between 1 and 64")
    if not 1 <= options.observers <= 100_000:
        parser.error("--observers must be between 1 and 100000")

    print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()} (client, Fleetgate)"
    )
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as scratch:
        folder = Path(scratch)
        pki = handshake.prepare(folder, options.clients)
        api_key = make_admin_key(pki)
        fleetgate = handshake.start_fleetgate(
            pki.data_dir, folder / "fleetgate.log", api=True
        )
        libcoap = start_libcoap_dynamic(pki, binary, folder / "libcoap.log")
        servers = [fleetgate, libcoap]
        requests: list[RequestResult] = []
        fan_outs: list[FanOutResult] = []
        try:
            if not options.skip_requests:
                spawn = multiprocessing.get_context("spawn")
                with spawn.Pool(options.clients) as pool:
                    pool.map(handshake._ready, range(options.clients))
                    requests = [
                        measure_requests(
                            server, pool, pki, options.clients, options.seconds, method
                        )
                        for method in ("GET", "POST")
                        for server in servers
                    ]
                    echo = start_echo(folder / "echo.log")
                    try:
                        requests.append(
                            measure_requests(
                                echo,
                                pool,
                                pki,
                                options.clients,
                                options.seconds,
                                "ECHO",
                                runner=run_echo,
                            )
                        )
                    finally:
                        echo.stop()
            observed = pki.devices[0]
            prepare_observed(fleetgate, observed, method=Code.POST)
            prepare_observed(libcoap, observed, method=Code.PUT)
            device_id = find_device_id(pki, "bench-000")
            assert fleetgate.api_url is not None
            fan_outs.append(
                measure_fan_out(
                    fleetgate,
                    observed,
                    options.clients,
                    options.observers,
                    api_change(fleetgate.api_url, api_key, device_id),
                )
            )
            # libcoap keeps one observation per session and resource, so
            # it gets one observer on each of as many sessions.
            fan_outs.append(
                measure_fan_out(
                    libcoap,
                    observed,
                    options.clients,
                    fan_outs[0].sessions,
                    coap_change(libcoap.port, observed),
                    per_session=1,
                )
            )
        finally:
            for server in servers:
                server.stop()

    if requests:
        print(
            f"\nRequests on {REQUEST_PATH} over one session per client, "
            f"{options.clients} clients"
        )
        print_requests(requests)
        for fleet, c_server in (requests[0:2], requests[2:4]):
            print(
                f"ratio Fleetgate/libcoap {fleet.method}: rate "
                f"{fleet.rate / c_server.rate:.2f}, server CPU per request "
                f"{fleet.cpu_us / c_server.cpu_us:.1f}"
            )
        floor = requests[4]
        print(
            "asyncio UDP echo, no DTLS and no CoAP: server CPU per request "
            f"{floor.cpu_us / requests[1].cpu_us:.1f} times libcoap's GET; "
            f"Fleetgate's GET costs {requests[0].cpu_us / floor.cpu_us:.1f} "
            "times the echo"
        )
    print(
        "\nObserve fan-out: one change; Fleetgate has "
        f"{OBSERVERS_PER_SESSION} observers per session, libcoap one; "
        f"{options.clients} clients"
    )
    print_fan_out(fan_outs)
    fleet_fan, c_fan = fan_outs
    if c_fan.cpu_seconds > 0:
        print(
            "ratio Fleetgate/libcoap: server CPU per notification "
            f"{fleet_fan.cpu_us / c_fan.cpu_us:.1f}"
        )
    else:
        print("libcoap's CPU time stayed under one clock tick: no ratio")


def start_libcoap_dynamic(
    pki: handshake.BenchPki, binary: str, log_path: Path
) -> handshake.Server:
    """Start ``coap-server-openssl`` that creates resources on PUT or POST."""
    server = handshake.start_libcoap(pki, binary, log_path, extra=("-d", "10", "-N"))
    return dataclasses.replace(server, path=REQUEST_PATH)


if __name__ == "__main__":
    main()
