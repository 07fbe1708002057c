"""A throwaway PostgreSQL cluster that a test may stop and start again.

It is made with ``tests/pg_server.sh`` from Debian's ``postgresql``
package in a fresh folder, on a free loopback port. Tests that need to
stop the database use their own cluster, never the shared server named
by FLEETGATE_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "pg_server.sh"
PG_BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))

requires_postgres_binaries = pytest.mark.skipif(
    not PG_BINARIES,
    reason="PostgreSQL server binaries (Debian postgresql) not installed",
)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresCluster:
    """One PostgreSQL server in its own folder, started and stopped on demand."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.url = ""

    def start(self) -> None:
        """Start the server (creating the cluster the first time)."""
        completed = self._run("start", str(self.port))
        self.url = completed.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        """Stop the server at once (pg_ctl -m fast), ending every connection."""
        self._run("stop")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), args[0], str(self.folder), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )


@pytest.fixture
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A running throwaway PostgreSQL server, removed after the test."""
    # Not under pytest's tmp_path: as root, the cluster belongs to the
    # "postgres" user, which cannot enter pytest's 0700 folders.
    parent = Path(tempfile.mkdtemp(prefix="fleetgate-pg-"))
    parent.chmod(0o755)
    cluster = PostgresCluster(parent / "cluster", free_port())
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run(
            ["bash", str(SCRIPT), "stop", str(cluster.folder)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(parent, ignore_errors=True)
