"""Measure resident memory per idle DTLS session and per registered device.

Run by hand: ``python bench/memory.py [--sessions 1000] [--devices 100000]``.
``--sessions 10000`` needs an open-file limit above 2,500 per client
process, because each of the 4 processes opens a socket per session.

Sessions: ``fleetgate serve`` and ``coap-server-openssl`` get the same
certificates (see ``bench/handshake.py``). Client processes open N
sessions, send one GET on each (on Fleetgate it returns after the
association, so each session holds its device link), then leave them
idle while the server's VmRSS is read from ``/proc/<pid>/status``. The
figure is the growth over the RSS after one warm-up session, divided
by N. The ratio is Fleetgate's figure over libcoap's from the same run.

Devices: N device rows are bulk-inserted into a fresh SQLite store, then
``fleetgate serve`` starts on it and serves one session. Its RSS is
compared with that of a server on an empty store; the database file
size per device is printed beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import multiprocessing
import multiprocessing.synchronize
import shutil
import sys
import tempfile
import time
from pathlib import Path

from OpenSSL import SSL
from sqlalchemy import insert

from fleetgate.client import (
    ClientError,
    DeviceCredentials,
    DtlsChannel,
    build_client_context,
)
from fleetgate.config import Settings
from fleetgate.store.database import Database
from fleetgate.store.models import Device, new_id

sys.path.insert(0, str(Path(__file__).parent))
import handshake  # noqa: E402  (a sibling script, not a package)

MAX_SESSIONS = 20_000
MAX_DEVICES = 1_000_000
CLIENTS = 4
# Rows per INSERT statement of the bulk load.
INSERT_BATCH = 5000
# Seconds the server gets to settle before its RSS is read.
SETTLE_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class HoldJob:
    """Sessions one client process opens and holds."""

    credentials: DeviceCredentials
    port: int
    path: str
    count: int


def rss_bytes(pid: int) -> int:
    """Return the resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def hold_sessions(
    job: HoldJob,
    ready: multiprocessing.SimpleQueue[tuple[int, int]],
    release: multiprocessing.synchronize.Event,
) -> None:
    """Open ``job.count`` sessions with one GET each, hold them until released."""
    context = build_client_context(job.credentials)
    channels: list[DtlsChannel] = []
    failures = 0
    try:
        for index in range(job.count):
            channel = DtlsChannel(context, "127.0.0.1", job.port)
            try:
                channel.connect(handshake.CLIENT_TIMEOUT)
                handshake.coap_get(channel, job.path, index & 0xFFFF)
            except (ClientError, TimeoutError, SSL.Error):
                channel.close()
                failures += 1
                continue
            channels.append(channel)
        ready.put((len(channels), failures))
        release.wait(timeout=600)
    finally:
        for channel in channels:
            channel.close()


def session_memory(
    server: handshake.Server, device: DeviceCredentials, count: int
) -> tuple[float, int]:
    """Return (bytes per idle session, sessions held) for ``count`` sessions."""
    handshake.wait_until_serving(server, device)
    time.sleep(SETTLE_SECONDS)
    before = rss_bytes(server.process.pid)

    spawn = multiprocessing.get_context("spawn")
    ready: multiprocessing.SimpleQueue[tuple[int, int]] = spawn.SimpleQueue()
    release = spawn.Event()
    share = -(-count // CLIENTS)
    jobs = [
        HoldJob(device, server.port, server.path, min(share, count - i * share))
        for i in range(CLIENTS)
        if count - i * share > 0
    ]
    workers = [
        spawn.Process(target=hold_sessions, args=(job, ready, release)) for job in jobs
    ]
    for worker in workers:
        worker.start()
    try:
        held = 0
        for _ in workers:
            opened, _failures = ready.get()
            held += opened
        time.sleep(SETTLE_SECONDS)
        after = rss_bytes(server.process.pid)
    finally:
        release.set()
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
    return (after - before) / max(held, 1), held


def insert_devices(url: str, count: int) -> None:
    """Insert ``count`` device rows into project ``bench`` in batches."""
    db = Database.open(url)
    now = dt.datetime.now(dt.UTC)
    try:
        for start in range(0, count, INSERT_BATCH):
            rows = [
                {
                    "id": new_id(),
                    "project_id": handshake.PROJECT,
                    "name": f"bulk-{index:07d}",
                    "certificate_id": f"bulk-{index:07d}",
                    "enabled": True,
                    "hardware_ids": [],
                    "tags": [],
                    "metadata": {},
                    "created_at": now,
                }
                for index in range(start, min(start + INSERT_BATCH, count))
            ]
            with db.session() as session:
                session.execute(insert(Device), rows)
    finally:
        db.dispose()


def device_memory(
    pki: handshake.BenchPki, folder: Path, count: int
) -> tuple[int, int, int]:
    """Return RSS on an empty store, RSS with ``count`` devices, and DB bytes."""
    results = []
    for devices in (0, count):
        data_dir = folder / f"store-{devices}"
        shutil.copytree(pki.data_dir, data_dir)
        url = Settings(data_dir=data_dir).resolved_database_url
        if devices:
            insert_devices(url, devices)
        server = handshake.start_fleetgate(
            data_dir, folder / f"fleetgate-{devices}.log"
        )
        try:
            handshake.wait_until_serving(server, pki.devices[0])
            time.sleep(SETTLE_SECONDS)
            results.append(rss_bytes(server.process.pid))
        finally:
            server.stop()
        database = Path(url.removeprefix("sqlite:///"))
        size = sum(
            path.stat().st_size for path in database.parent.glob(database.name + "*")
        )
    return results[0], results[1], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sessions", type=int, default=1000, help="Idle sessions held open."
    )
    parser.add_argument(
        "--devices", type=int, default=100_000, help="Device rows inserted; 0 skips."
    )
    options = parser.parse_args()
    if not 1 <= options.sessions <= MAX_SESSIONS:
        parser.error(f"--sessions must be between 1 and {MAX_SESSIONS}")
    if not 0 <= options.devices <= MAX_DEVICES:
        parser.error(f"--devices must be between 0 and {MAX_DEVICES}")
    binary = shutil.which("coap-server-openssl")
    if binary is None:
        parser.error("coap-server-openssl not found; install Debian libcoap3-bin")

    with tempfile.TemporaryDirectory(prefix="fleetgate-memory-") as scratch:
        folder = Path(scratch)
        pki = handshake.prepare(folder, 1)
        sessions = []
        limit = ["--max-sessions", str(options.sessions + CLIENTS + 10)]
        starters = (
            lambda: handshake.start_fleetgate(
                pki.data_dir, folder / "fleetgate.log", options=limit
            ),
            lambda: handshake.start_libcoap(pki, binary, folder / "libcoap.log"),
        )
        for start in starters:
            server = start()
            try:
                per_session, held = session_memory(
                    server, pki.devices[0], options.sessions
                )
            finally:
                server.stop()
            sessions.append((server.name, per_session, held))
        devices = (
            device_memory(pki, folder, options.devices) if options.devices else None
        )

    print(f"\nIdle sessions, {CLIENTS} client processes")
    print(f"{'server':<20} {'sessions':>8} {'KiB/session':>11}")
    for name, per_session, held in sessions:
        print(f"{name:<20} {held:>8} {per_session / 1024:>11.1f}")
    print(f"ratio Fleetgate/libcoap per session: {sessions[0][1] / sessions[1][1]:.2f}")
    if devices is not None:
        empty, full, size = devices
        print(f"\nRegistered devices: {options.devices} rows on SQLite")
        print(f"{'store':<12} {'RSS MiB':>8}")
        print(f"{'empty':<12} {empty / 2**20:>8.1f}")
        print(f"{options.devices:<12} {full / 2**20:>8.1f}")
        growth = (full - empty) / options.devices
        print(
            f"RSS per device {growth:.1f} B, ratio to empty {full / empty:.2f}; "
            f"database {size / options.devices:.0f} B per device"
        )


if __name__ == "__main__":
    main()
