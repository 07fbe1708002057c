"""Time a zero-touch burst of new devices against reconnects of known ones.

Run by hand: ``python bench/burst.py [--devices 2000] [--clients 4]``,
or with ``--devices 10000`` for the full-size burst. It starts ``fleetgate serve``
on SQLite and, when ``FLEETGATE_BENCH_POSTGRES_URL`` is set, again on
that PostgreSQL database. The project gets a fresh random name per run,
so a reused database needs no cleanup.

Each of N device certificates has its own key and certificate ID, and
no device record exists before the burst. Client processes connect every
device once, as fast as they can: a full handshake, one confirmable GET
on ``.d`` (answered only after the association has created the device)
and close_notify. Then the same devices, now known, connect again the
same way; that rate is the reference. Afterwards the store is counted:
devices created, certificate IDs with more than one device (duplicates)
and devices given a suffixed name because the plain one was taken.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from aiocoap.numbers.codes import Code
from OpenSSL import SSL
from sqlalchemy import func, select

from fleetgate.client import (
    ClientError,
    DeviceCredentials,
    DtlsChannel,
    build_client_context,
)
from fleetgate.gateway.server_identity import ensure_development_identity
from fleetgate.pki import tools
from fleetgate.store import certificates, projects
from fleetgate.store.database import Database
from fleetgate.store.models import Device

sys.path.insert(0, str(Path(__file__).parent))
import handshake  # noqa: E402  (a sibling script, not a package)

POSTGRES_ENV = "FLEETGATE_BENCH_POSTGRES_URL"
MAX_DEVICES = 100_000
MAX_CLIENTS = 64
# Seconds a whole phase may take before the clients give up, per device.
SECONDS_PER_DEVICE = 0.5


@dataclasses.dataclass(frozen=True)
class PhaseReport:
    """Counts and times reported by the clients of one phase."""

    connected: int
    failures: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        """Connections per second."""
        return self.connected / self.seconds

    @property
    def cpu_ms(self) -> float:
        """Server CPU per connection, in milliseconds."""
        return self.cpu_seconds / max(self.connected, 1) * 1e3


@dataclasses.dataclass(frozen=True)
class BurstJob:
    """The devices one client process connects, each once."""

    devices: list[DeviceCredentials]
    port: int
    start_at: float
    deadline: float


def issue_devices(
    folder: Path, project: str, count: int, server_ca: Path
) -> tuple[Path, list[DeviceCredentials]]:
    """Write a root and ``count`` device certificates of distinct IDs."""
    root_key, root = tools.make_root("Burst Root")
    root_path = folder / "device-root.pem"
    tools.write_certificate(root_path, root)
    issued = []
    for index in range(count):
        key = tools.make_device_key("ec-p256")
        csr = tools.make_device_csr(key, project, f"burst-{index:06d}")
        cert_path = folder / f"device-{index}.pem"
        key_path = folder / f"device-{index}.key"
        tools.write_certificate(cert_path, tools.sign_device_csr(csr, root_key, root))
        tools.write_private_key(key_path, key)
        issued.append(DeviceCredentials(cert_path, key_path, server_ca))
    return root_path, issued


def connect_each(job: BurstJob) -> tuple[int, int, float]:
    """Connect each device once with a GET; return (connected, failures, end)."""
    connected = failures = 0
    while time.monotonic() < job.start_at:
        time.sleep(0.001)
    for index, credentials in enumerate(job.devices):
        if time.monotonic() > job.deadline:
            failures += len(job.devices) - index
            break
        channel = DtlsChannel(build_client_context(credentials), "127.0.0.1", job.port)
        try:
            channel.connect(handshake.CLIENT_TIMEOUT)
            code = handshake.coap_get(channel, ".d", index & 0xFFFF)
        except (ClientError, TimeoutError, SSL.Error):
            failures += 1
            continue
        finally:
            channel.close()
        if code is Code.CONTENT:
            connected += 1
        else:
            failures += 1
    return connected, failures, time.monotonic()


def run_phase(
    server: handshake.Server,
    pool: multiprocessing.pool.Pool,
    devices: list[DeviceCredentials],
    clients: int,
) -> PhaseReport:
    """Connect every device once, spread over ``clients`` processes."""
    start_at = time.monotonic() + 0.5
    deadline = start_at + 30 + SECONDS_PER_DEVICE * len(devices) / clients
    jobs = [
        BurstJob(devices[index::clients], server.port, start_at, deadline)
        for index in range(clients)
    ]
    pending = pool.map_async(connect_each, jobs)
    time.sleep(max(start_at - time.monotonic(), 0.0))
    cpu_before = server.cpu_seconds()
    results = pending.get(timeout=deadline - time.monotonic() + 60)
    cpu_after = server.cpu_seconds()
    return PhaseReport(
        connected=sum(connected for connected, _, _ in results),
        failures=sum(failures for _, failures, _ in results),
        seconds=max(end for _, _, end in results) - start_at,
        cpu_seconds=cpu_after - cpu_before,
    )


def count_store(url: str, project: str) -> tuple[int, int, int]:
    """Return devices, duplicated certificate IDs and suffixed names."""
    db = Database.open(url)
    try:
        with db.session(read_only=True) as session:
            in_project = Device.project_id == project
            total = session.scalar(select(func.count()).where(in_project)) or 0
            repeated = (
                select(Device.certificate_id)
                .where(in_project)
                .group_by(Device.certificate_id)
                .having(func.count() > 1)
                .subquery()
            )
            duplicates = session.scalar(select(func.count()).select_from(repeated))
            suffixed = session.scalar(
                select(func.count()).where(
                    in_project, Device.name != Device.certificate_id
                )
            )
    finally:
        db.dispose()
    return total, duplicates or 0, suffixed or 0


def run_backend(
    label: str, url: str, folder: Path, devices_wanted: int, clients: int
) -> tuple[PhaseReport, PhaseReport, tuple[int, int, int]]:
    """Provision a project on ``url``, then burst new and known devices."""
    project = f"burst-{secrets.token_hex(4)}"
    data_dir = folder / "data"
    identity = ensure_development_identity(data_dir / "server-pki")
    assert identity.root_path is not None
    root_path, devices = issue_devices(
        folder, project, devices_wanted, identity.root_path
    )
    db = Database.open(url)
    try:
        projects.create_project(db, project)
        certificates.add_ca_certificate(db, project, root_path.read_bytes())
    finally:
        db.dispose()

    server = handshake.start_fleetgate(
        data_dir, folder / f"fleetgate-{label}.log", database_url=url
    )
    try:
        spawn = multiprocessing.get_context("spawn")
        with spawn.Pool(clients) as pool:
            pool.map(handshake._ready, range(clients))  # import before timing
            new = run_phase(server, pool, devices, clients)
            known = run_phase(server, pool, devices, clients)
    finally:
        server.stop()
    return new, known, count_store(url, project)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--devices", type=int, default=2000, help="Distinct new devices to connect."
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="Number of client processes."
    )
    options = parser.parse_args()
    if not 1 <= options.devices <= MAX_DEVICES:
        parser.error(f"--devices must be between 1 and {MAX_DEVICES}")
    if not 1 <= options.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be between 1 and {MAX_CLIENTS}")

    backends = []
    with tempfile.TemporaryDirectory(prefix="fleetgate-burst-") as scratch:
        sqlite_folder = Path(scratch) / "sqlite"
        sqlite_url = f"sqlite:///{sqlite_folder / 'data' / 'fleetgate.db'}"
        backends.append(("sqlite", sqlite_url, sqlite_folder))
        postgres_url = os.environ.get(POSTGRES_ENV)
        if postgres_url:
            backends.append(("postgresql", postgres_url, Path(scratch) / "postgres"))
        results = []
        for label, url, folder in backends:
            folder.mkdir(parents=True)
            print(f"{label}: issuing {options.devices} certificates", flush=True)
            results.append(
                (
                    label,
                    *run_backend(label, url, folder, options.devices, options.clients),
                )
            )

    print(f"\n{options.devices} devices, {options.clients} clients")
    header = f"{'store':<10} {'phase':<6} {'ok':>6} {'fail':>4} {'per s':>7}"
    header += f" {'cpu ms':>7} {'created':>7} {'dupl':>4} {'suffixed':>8} {'ratio':>6}"
    print(header)
    for label, new, known, (total, duplicates, suffixed) in results:
        for phase, report in (("new", new), ("known", known)):
            line = f"{label:<10} {phase:<6} {report.connected:>6} {report.failures:>4}"
            line += f" {report.rate:>7.0f} {report.cpu_ms:>7.3f}"
            if phase == "new":
                line += f" {total:>7} {duplicates:>4} {suffixed:>8}"
                line += f" {new.rate / known.rate:>6.2f}"
            print(line)
    if not postgres_url:
        print(f"(PostgreSQL skipped: set {POSTGRES_ENV} to a database URL)")


if __name__ == "__main__":
    main()
