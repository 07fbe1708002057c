"""Time DTLS handshakes and CoAP GETs on fleetgate serve against libcoap's server.

Run by hand: ``python bench/handshake.py [--clients N] [--seconds S]``.
It needs ``coap-server-openssl`` (Debian libcoap3-bin) on the PATH.

Both servers get the same server certificate (P-256, from the
development server CA) and verify the same P-256 device certificates
against the same root. Fleetgate also associates each connection with
its device record, which already exists because every device connects
once before the timed part. N client processes on loopback repeat a
full handshake, one confirmable GET (which on Fleetgate only returns
after the association) and close_notify, for S seconds or a bounded
count. Server CPU comes from /proc/<pid>/stat.

The GET part keeps one session open and repeats a GET: ``.d`` on
Fleetgate, the index resource on libcoap.

Both servers share the machine with the clients, so absolute figures
move with the load. The ratios to libcoap, measured in the same run,
are the stable result.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from OpenSSL import SSL

from fleetgate.client import (
    ClientError,
    DeviceCredentials,
    DtlsChannel,
    build_client_context,
)
from fleetgate.config import Settings
from fleetgate.gateway.server_identity import ensure_development_identity
from fleetgate.pki import tools
from fleetgate.store import certificates, devices, projects
from fleetgate.store.database import Database

PROJECT = "bench"
READY = re.compile(r"Device gateway ready on coaps://[^ ]+:(?P<port>\d+)")
API_READY = re.compile(r"API ready on (?P<url>http://\S+)")
START_TIMEOUT = 90.0
# Seconds a client waits for a handshake or a response before counting a failure.
CLIENT_TIMEOUT = 5.0
# Hard bounds of every client loop, whatever the value of --seconds.
MAX_HANDSHAKES_PER_CLIENT = 20_000
MAX_GETS = 200_000
MAX_FAILURES = 50


@dataclasses.dataclass(frozen=True)
class BenchPki:
    """Files shared by both servers and all clients."""

    data_dir: Path
    server_ca: Path
    server_chain: Path
    server_key: Path
    device_root: Path
    devices: tuple[DeviceCredentials, ...]


@dataclasses.dataclass(frozen=True)
class ClientJob:
    """The work of one client process and its time window."""

    credentials: DeviceCredentials
    port: int
    path: str
    ciphers: str
    start_at: float
    end_at: float
    max_iterations: int
    request: bool


@dataclasses.dataclass(frozen=True)
class ClientReport:
    """Measurements of one client process."""

    latencies: list[float]  # seconds per handshake
    completed: int
    failures: int
    finished_at: float
    cipher: str | None


@dataclasses.dataclass
class Server:
    """A server process under test and its UDP port."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    path: str
    api_url: str | None = None

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Terminate the process and wait for it, bounded."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def prepare(
    folder: Path,
    device_count: int,
    *,
    database_url: str | None = None,
    project: str = PROJECT,
) -> BenchPki:
    """Create the project, its root, the device certificates and the server PKI."""
    data_dir = folder / "data"
    identity = ensure_development_identity(data_dir / "server-pki")
    assert identity.root_path is not None
    root_key, root = tools.make_root("Bench Root")
    device_root = folder / "device-root.pem"
    tools.write_certificate(device_root, root)

    url = database_url or Settings(data_dir=data_dir).resolved_database_url
    db = Database.open(url)
    try:
        projects.create_project(db, project)
        certificates.add_ca_certificate(db, project, device_root.read_bytes())
    finally:
        db.dispose()

    issued = []
    for index in range(device_count):
        key = tools.make_device_key("ec-p256")
        csr = tools.make_device_csr(key, project, f"bench-{index:03d}")
        cert_path, key_path = (
            folder / f"device-{index}.pem",
            folder / f"device-{index}.key",
        )
        tools.write_certificate(cert_path, tools.sign_device_csr(csr, root_key, root))
        tools.write_private_key(key_path, key)
        issued.append(DeviceCredentials(cert_path, key_path, identity.root_path))
    return BenchPki(
        data_dir=data_dir,
        server_ca=identity.root_path,
        server_chain=identity.credentials.certificate_chain,
        server_key=identity.credentials.private_key,
        device_root=device_root,
        devices=tuple(issued),
    )


def start_fleetgate(
    data_dir: Path,
    log_path: Path,
    *,
    database_url: str | None = None,
    options: Sequence[str] = (),
    api: bool = False,
) -> Server:
    """Start ``fleetgate serve`` on loopback and wait for its ready lines."""
    log_file = log_path.open("wb")
    command = [sys.executable, "-m", "fleetgate", "serve", "--data-dir"]
    command += [str(data_dir), "--host", "127.0.0.1", "--port", "0"]
    if api:
        command += ["--api-host", "127.0.0.1", "--api-port", "0"]
    else:
        command.append("--no-api")
    command += ["--log-level", "WARNING"]
    if database_url is not None:
        command += ["--database-url", database_url]
    command += options
    process = subprocess.Popen(
        command,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        output = log_path.read_text(errors="replace")
        match = READY.search(output)
        api_match = API_READY.search(output)
        if match and (api_match or not api):
            api_url = api_match["url"] if api_match else None
            return Server("fleetgate serve", process, int(match["port"]), ".d", api_url)
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"fleetgate serve did not start:\n{log_path.read_text()}")


def start_libcoap(
    pki: BenchPki, binary: str, log_path: Path, *, extra: Sequence[str] = ()
) -> Server:
    """Start ``coap-server-openssl`` with the same certificates."""
    base = free_port_pair()
    command = [binary, "-A", "127.0.0.1", "-p", str(base), "-v", "3", *extra]
    command += ["-c", str(pki.server_chain), "-j", str(pki.server_key)]
    command += ["-R", str(pki.device_root)]
    process = subprocess.Popen(
        command, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    # libcoap serves DTLS on the port after the one given (see its -h).
    server = Server("coap-server-openssl", process, base + 1, "")
    wait_until_serving(server, pki.devices[0])
    return server


def free_port_pair() -> int:
    """Return a port P with P and P+1 free for UDP and TCP on loopback."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base < 65535 and all(
            port_is_free(port, kind)
            for port in (base, base + 1)
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)
        ):
            return base
    raise RuntimeError("cannot find two adjacent free ports on 127.0.0.1")


def port_is_free(port: int, kind: int) -> bool:
    """Tell whether ``port`` can be bound on loopback for ``kind``."""
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until_serving(server: Server, credentials: DeviceCredentials) -> None:
    """Retry a handshake until the server completes one, within START_TIMEOUT."""
    context = build_client_context(credentials)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}")
        channel = DtlsChannel(context, "127.0.0.1", server.port)
        try:
            channel.connect(1.0)
            return
        except ClientError:
            time.sleep(0.1)
        finally:
            channel.close()
    raise RuntimeError(f"{server.name} did not accept a handshake in time")


def coap_get(channel: DtlsChannel, path: str, mid: int) -> Code:
    """Send one confirmable GET and return the code of its piggybacked response."""
    message = Message(code=Code.GET)
    message.mtype = Type.CON
    message.mid = mid
    message.token = mid.to_bytes(2, "big")
    message.opt.uri_path = tuple(path.split("/")) if path else ()
    channel.send(message.encode())
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        record = channel.receive(remaining)
        if record is None:
            break
        reply = Message.decode(record)
        if reply.mtype is Type.ACK and reply.mid == mid:
            return reply.code
    raise TimeoutError(f"no response to GET /{path} within {CLIENT_TIMEOUT} s")


def run_handshakes(job: ClientJob) -> ClientReport:
    """Repeat handshake, GET if requested, and close_notify in a worker process."""
    context = build_client_context(job.credentials, ciphers=job.ciphers)
    latencies: list[float] = []
    failures = 0
    cipher = None
    while time.monotonic() < job.start_at:
        time.sleep(0.001)
    while len(latencies) < job.max_iterations and time.monotonic() < job.end_at:
        channel = DtlsChannel(context, "127.0.0.1", job.port)
        started = time.monotonic()
        try:
            channel.connect(CLIENT_TIMEOUT)
            latencies.append(time.monotonic() - started)
            cipher = channel.cipher
            if job.request:
                coap_get(channel, job.path, len(latencies) & 0xFFFF)
        except (ClientError, TimeoutError, SSL.Error):
            failures += 1
            if failures >= MAX_FAILURES:
                break
        finally:
            channel.close()
    return ClientReport(latencies, len(latencies), failures, time.monotonic(), cipher)


def _ready(_: int) -> int:
    return os.getpid()


@dataclasses.dataclass(frozen=True)
class HandshakeResult:
    """Handshake figures of one server."""

    name: str
    request: bool
    completed: int
    failures: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float
    cipher: str | None

    @property
    def rate(self) -> float:
        """Completed connections per second."""
        return self.completed / self.seconds

    @property
    def cpu_ms(self) -> float:
        """Server CPU per connection, in milliseconds."""
        return self.cpu_seconds / max(self.completed, 1) * 1e3


def measure_handshakes(
    server: Server,
    pool: multiprocessing.pool.Pool,
    pki: BenchPki,
    clients: int,
    seconds: float,
    ciphers: str,
    *,
    request: bool,
) -> HandshakeResult:
    """Run ``clients`` connection loops against ``server`` for ``seconds``."""
    # Every device connects once first, so each timed connection finds
    # its device record, and caches are warm.
    context_by_device = [build_client_context(d, ciphers=ciphers) for d in pki.devices]
    for index, context in enumerate(context_by_device):
        channel = DtlsChannel(context, "127.0.0.1", server.port)
        try:
            channel.connect(CLIENT_TIMEOUT)
            coap_get(channel, server.path, index + 1)
        finally:
            channel.close()

    start_at = time.monotonic() + 0.5
    jobs = [
        ClientJob(
            credentials=pki.devices[index % len(pki.devices)],
            port=server.port,
            path=server.path,
            ciphers=ciphers,
            start_at=start_at,
            end_at=start_at + seconds,
            max_iterations=MAX_HANDSHAKES_PER_CLIENT,
            request=request,
        )
        for index in range(clients)
    ]
    pending = pool.map_async(run_handshakes, jobs)
    time.sleep(max(start_at - time.monotonic(), 0.0))
    cpu_before = server.cpu_seconds()
    reports: list[ClientReport] = pending.get(timeout=seconds + 60)
    cpu_after = server.cpu_seconds()

    finished = max(report.finished_at for report in reports)
    return HandshakeResult(
        name=server.name,
        request=request,
        completed=sum(report.completed for report in reports),
        failures=sum(report.failures for report in reports),
        seconds=finished - start_at,
        latencies=[value for report in reports for value in report.latencies],
        cpu_seconds=cpu_after - cpu_before,
        cipher=next((r.cipher for r in reports if r.cipher), None),
    )


@dataclasses.dataclass(frozen=True)
class GetResult:
    """Figures of repeated GETs over one established session."""

    name: str
    completed: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float

    @property
    def cpu_us(self) -> float:
        """Server CPU per GET, in microseconds."""
        return self.cpu_seconds / max(self.completed, 1) * 1e6


def measure_gets(
    server: Server, credentials: DeviceCredentials, seconds: float, ciphers: str
) -> GetResult:
    """Repeat a GET over one session for ``seconds``, bounded by MAX_GETS."""
    channel = DtlsChannel(
        build_client_context(credentials, ciphers=ciphers), "127.0.0.1", server.port
    )
    channel.connect(CLIENT_TIMEOUT)
    try:
        coap_get(channel, server.path, 1)  # association, on Fleetgate
        latencies: list[float] = []
        cpu_before = server.cpu_seconds()
        started = time.monotonic()
        end_at = started + seconds
        while len(latencies) < MAX_GETS and time.monotonic() < end_at:
            sent = time.monotonic()
            coap_get(channel, server.path, (len(latencies) + 2) & 0xFFFF)
            latencies.append(time.monotonic() - sent)
        elapsed = time.monotonic() - started
        cpu_after = server.cpu_seconds()
    finally:
        channel.close()
    return GetResult(
        server.name, len(latencies), elapsed, latencies, cpu_after - cpu_before
    )


def percentile(values: list[float], fraction: float) -> float:
    """Return the value below which ``fraction`` of ``values`` lie."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[round(fraction * 100) - 1]


def print_handshakes(results: list[HandshakeResult]) -> None:
    header = f"{'server':<20} {'GET':<4} {'conns':>6} {'fail':>4} {'per s':>7}"
    header += f" {'p50 ms':>7} {'p99 ms':>7} {'cpu ms':>7}  cipher"
    print(header)
    for result in results:
        p50 = percentile(result.latencies, 0.50) * 1e3
        p99 = percentile(result.latencies, 0.99) * 1e3
        get = "yes" if result.request else "no"
        line = f"{result.name:<20} {get:<4} {result.completed:>6} {result.failures:>4}"
        line += f" {result.rate:>7.0f} {p50:>7.2f} {p99:>7.2f}"
        line += f" {result.cpu_ms:>7.3f}  {result.cipher}"
        print(line)


def print_gets(results: list[GetResult]) -> None:
    print(f"{'server':<20} {'gets':>6} {'per s':>7} {'p50 us':>7} {'cpu us':>7}")
    for result in results:
        p50 = percentile(result.latencies, 0.50) * 1e6
        rate = result.completed / result.seconds
        line = f"{result.name:<20} {result.completed:>6} {rate:>7.0f}"
        line += f" {p50:>7.0f} {result.cpu_us:>7.1f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clients", type=int, default=4, help="Number of client processes."
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="Duration of each timed run, in seconds.",
    )
    parser.add_argument(
        "--ciphers",
        default="ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:@SECLEVEL=0",
        help="OpenSSL cipher list the clients offer.",
    )
    options = parser.parse_args()
    binary = shutil.which("coap-server-openssl")
    if binary is None:
        parser.error("coap-server-openssl not found; install Debian libcoap3-bin")
    if not 1 <= options.clients <= 64:
        parser.error("--clients must be between 1 and 64")

    print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()} (client, Fleetgate)"
    )
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as scratch:
        folder = Path(scratch)
        pki = prepare(folder, options.clients)
        servers = [
            start_fleetgate(pki.data_dir, folder / "fleetgate.log"),
            start_libcoap(pki, binary, folder / "libcoap.log"),
        ]
        spawn = multiprocessing.get_context("spawn")
        try:
            with spawn.Pool(options.clients) as pool:
                pool.map(_ready, range(options.clients))  # import before timing
                handshakes = [
                    measure_handshakes(
                        server,
                        pool,
                        pki,
                        options.clients,
                        options.seconds,
                        options.ciphers,
                        request=request,
                    )
                    for request in (True, False)
                    for server in servers
                ]
            gets = [
                measure_gets(server, pki.devices[0], options.seconds, options.ciphers)
                for server in servers
            ]
        finally:
            for server in servers:
                server.stop()
        db = Database.open(Settings(data_dir=pki.data_dir).resolved_database_url)
        try:
            device_total = devices.list_devices(db, PROJECT).total
        finally:
            db.dispose()

    print(
        f"\nConnections: handshake, one GET or none, close_notify; "
        f"{options.clients} clients"
    )
    print_handshakes(handshakes)
    for fleetgate, libcoap in (handshakes[0:2], handshakes[2:4]):
        get = "with GET" if fleetgate.request else "without GET"
        print(
            f"ratio Fleetgate/libcoap {get}: rate "
            f"{fleetgate.rate / libcoap.rate:.2f}, server CPU per connection "
            f"{fleetgate.cpu_ms / libcoap.cpu_ms:.2f}"
        )
    print(f"devices in the store: {device_total} (one per certificate)")
    print("\nGETs over one established session, one client")
    print_gets(gets)
    get_fleetgate, get_libcoap = gets
    print(
        f"ratio Fleetgate/libcoap: server CPU per GET "
        f"{get_fleetgate.cpu_us / get_libcoap.cpu_us:.1f}; on Fleetgate a GET "
        f"costs {get_fleetgate.cpu_us / 1e3 / handshakes[0].cpu_ms:.2f} "
        "of a connection with GET"
    )


if __name__ == "__main__":
    main()
