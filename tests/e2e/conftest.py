"""Fixtures that run the real ``fleetgate serve`` and a real DTLS client.

The server runs as a subprocess on loopback with a kernel-chosen port,
read back from its ready line. Devices are played by Debian's
``coap-client-openssl``; it exits 0 even when the handshake or request
fails, so results are judged by its output.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

COAP_CLIENT = shutil.which("coap-client-openssl")
OPENSSL = shutil.which("openssl")
READY = re.compile(r"Device gateway ready on coaps://(?P<host>[^ ]+):(?P<port>\d+)")
API_READY = re.compile(r"API ready on (?P<url>http://\S+)")
ADMIN_KEY = re.compile(r"^\s+(?P<key>fgk_\S+)$", re.MULTILINE)
START_TIMEOUT = 30.0

requires_coap_client = pytest.mark.skipif(
    COAP_CLIENT is None,
    reason="coap-client-openssl (Debian libcoap3-bin) not installed",
)


def fleetgate(
    data_dir: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run one ``fleetgate`` command against ``data_dir``."""
    return subprocess.run(
        [sys.executable, "-m", "fleetgate", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


@dataclasses.dataclass
class RunningServer:
    """A ``fleetgate serve`` subprocess and where to reach it."""

    process: subprocess.Popen[str]
    data_dir: Path
    port: int
    log_path: Path
    # Base URL of the management API, None when started with --no-api.
    api_url: str | None = None
    # The admin key printed at this start, None when one existed before.
    admin_key: str | None = None

    @property
    def server_ca(self) -> Path:
        """The development server CA that devices trust."""
        return self.data_dir / "server-pki" / "server-ca.pem"

    def log(self) -> str:
        """Everything the server has logged so far."""
        return self.log_path.read_text()

    def url(self, path: str) -> str:
        """A coaps URL on this server."""
        return f"coaps://127.0.0.1:{self.port}/{path}"


@dataclasses.dataclass(frozen=True)
class CoapResult:
    """What ``coap-client-openssl`` printed."""

    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def start_server(data_dir: Path, *extra: str) -> RunningServer:
    """Start ``fleetgate serve`` and wait for its ready lines.

    The management API listens on a free loopback port unless ``extra``
    contains ``--no-api``.
    """
    with_api = "--no-api" not in extra
    if with_api:
        extra = ("--api-host", "127.0.0.1", "--api-port", "0", *extra)
    log_path = data_dir.parent / f"{data_dir.name}-serve.log"
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetgate",
            "serve",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *extra,
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = log_path.read_text()
        match = READY.search(text)
        api = API_READY.search(text)
        if match and (api or not with_api):
            # serve prints a new admin key before the API ready line.
            key = ADMIN_KEY.search(text)
            return RunningServer(
                process,
                data_dir,
                int(match["port"]),
                log_path,
                api_url=api["url"] if api else None,
                admin_key=key["key"] if key else None,
            )
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"fleetgate serve did not start:\n{log_path.read_text()}")


def stop_server(server: RunningServer) -> int:
    """Stop the server with SIGTERM and return its exit status."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            return server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)
            raise
    return server.process.returncode


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def server(data_dir: Path) -> Iterator[RunningServer]:
    """A running server on an empty data folder."""
    running = start_server(data_dir)
    yield running
    stop_server(running)


def coap_client(
    server: RunningServer,
    path: str,
    *,
    cert: Path,
    key: Path,
    method: str = "get",
    payload: str | None = None,
    content_format: int | None = None,
    accept: int | None = None,
    timeout: int = 5,
    payload_file: Path | None = None,
    output_file: Path | None = None,
    verbose: bool = False,
    block_size: int | None = None,
) -> CoapResult:
    """Send one request with ``coap-client-openssl`` as a certificate device.

    ``verbose`` prints each message with its code and options (``-v 6``),
    such as ``v:1 t:ACK c:4.29 ... [ Max-Age:3598 ]``.
    """
    assert COAP_CLIENT is not None
    command = [
        COAP_CLIENT,
        "-B",
        str(timeout),
        "-m",
        method,
        "-c",
        str(cert),
        "-j",
        str(key),
        "-R",
        str(server.server_ca),
    ]
    if payload is not None:
        command += ["-e", payload]
    if payload_file is not None:
        command += ["-f", str(payload_file)]
    if output_file is not None:
        command += ["-o", str(output_file)]
    if verbose:
        command += ["-v", "6"]
    if block_size is not None:
        command += ["-b", str(block_size)]
    if content_format is not None:
        command += ["-t", str(content_format)]
    if accept is not None:
        command += ["-A", str(accept)]
    command.append(server.url(path))
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout + 20
    )
    return CoapResult(completed.stdout, completed.stderr)
