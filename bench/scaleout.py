"""Time handshakes and GETs on fleetgate serve with 1, 2 and N gateway workers.

Run by hand: ``python bench/scaleout.py [--workers 1,2,4] [--clients N]
[--seconds S]``. PostgreSQL runs too when ``FLEETGATE_BENCH_POSTGRES_URL``
names a database; the project gets a random name, so a reused database
needs no cleanup.

For each store and each worker count, ``fleetgate serve --workers W``
starts on one database. N client processes on loopback first repeat,
for S seconds, a full handshake with one confirmable GET on ``.d``
(``handshake.py``'s connection loop). Then each holds one session and
repeats GETs (``requests.py``'s request loop). Server CPU is the sum
over the parent and its worker processes, read from /proc. Rates are
printed with their ratio to one worker on the same store.

The clients share the machine with the server: on a machine with C
cores, W workers can use at most C cores minus what the clients take,
so the ratio stops growing well before W reaches C.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import platform
import secrets
import sys
import tempfile
from pathlib import Path

from OpenSSL import SSL

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handshake  # noqa: E402  (a sibling script, not a package)
import requests  # noqa: E402  (the sibling bench/requests.py)

POSTGRES_ENV = "FLEETGATE_BENCH_POSTGRES_URL"
MAX_WORKERS = 16


class ProcessTree(handshake.Server):
    """A server whose CPU time includes that of its child processes."""

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process and its live children."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in [self.process.pid, *_children(self.process.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
            except FileNotFoundError:
                continue
            utime, stime = fields.split()[11:13]
            total += (int(utime) + int(stime)) / tick
        return total


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


@dataclasses.dataclass(frozen=True)
class ScaleResult:
    """Figures of one store and worker count."""

    store: str
    workers: int
    connections: handshake.HandshakeResult
    gets: requests.RequestResult


def measure(
    store: str,
    database_url: str | None,
    workers: int,
    pki: handshake.BenchPki,
    pool: multiprocessing.pool.Pool,
    options: argparse.Namespace,
    folder: Path,
) -> ScaleResult:
    """Start the server with ``workers`` workers and run both loops on it."""
    started = handshake.start_fleetgate(
        pki.data_dir,
        folder / f"fleetgate-{store}-{workers}.log",
        database_url=database_url,
        options=["--workers", str(workers)],
    )
    server = ProcessTree(started.name, started.process, started.port, started.path)
    try:
        connections = handshake.measure_handshakes(
            server,
            pool,
            pki,
            options.clients,
            options.seconds,
            requests.CIPHERS,
            request=True,
        )
        gets = requests.measure_requests(
            server, pool, pki, options.clients, options.seconds, "GET"
        )
    finally:
        server.stop()
    return ScaleResult(store, workers, connections, gets)


def print_results(results: list[ScaleResult]) -> None:
    header = f"{'store':<10} {'workers':>7} {'conns/s':>8} {'ratio':>6}"
    header += f" {'cpu ms':>7} {'GETs/s':>7} {'ratio':>6} {'cpu us':>7} {'fail':>5}"
    print(header)
    base: dict[str, ScaleResult] = {}
    for result in results:
        first = base.setdefault(result.store, result)
        connections, gets = result.connections, result.gets
        failures = connections.failures + gets.failures
        line = f"{result.store:<10} {result.workers:>7}"
        line += f" {connections.rate:>8.0f}"
        line += f" {connections.rate / first.connections.rate:>6.2f}"
        line += f" {connections.cpu_ms:>7.2f} {gets.rate:>7.0f}"
        line += f" {gets.rate / first.gets.rate:>6.2f} {gets.cpu_us:>7.0f}"
        line += f" {failures:>5}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers",
        default="1,2,4",
        help="Comma-separated worker counts; the first is the reference.",
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="Number of client processes."
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="Duration of each timed loop."
    )
    options = parser.parse_args()
    counts = [int(part) for part in options.workers.split(",") if part]
    if not counts or not all(1 <= count <= MAX_WORKERS for count in counts):
        parser.error(f"--workers takes counts between 1 and {MAX_WORKERS}")
    if not 1 <= options.clients <= 64:
        parser.error("--clients must be between 1 and 64")

    print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()}"
    )
    stores: list[tuple[str, str | None]] = [("SQLite", None)]
    postgres_url = os.environ.get(POSTGRES_ENV)
    if postgres_url:
        stores.append(("PostgreSQL", postgres_url))

    results: list[ScaleResult] = []
    spawn = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as scratch,
        spawn.Pool(options.clients) as pool,
    ):
        pool.map(handshake._ready, range(options.clients))
        for store, url in stores:
            folder = Path(scratch) / store
            pki = handshake.prepare(
                folder,
                options.clients,
                database_url=url,
                project=f"scale-{secrets.token_hex(4)}",
            )
            for count in counts:
                results.append(measure(store, url, count, pki, pool, options, folder))

    print(
        f"\nHandshake + GET per connection, then GETs over one session per "
        f"client; {options.clients} clients, ratios to {counts[0]} worker(s)"
    )
    print_results(results)
    if not postgres_url:
        print(f"(PostgreSQL skipped: set {POSTGRES_ENV} to a database URL)")


if __name__ == "__main__":
    main()
