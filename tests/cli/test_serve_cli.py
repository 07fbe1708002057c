"""``fleetgate serve``: start-up failures end with one error line, not a traceback."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from fleetgate.cli.main import app
from fleetgate.gateway.server import Gateway
from fleetgate.pki import tools


def serve(tmp_path: Path, *args: str) -> Result:
    """Run ``fleetgate serve`` in-process on loopback with a fresh data folder.

    Both ports default to 0, so a regression that lets the server start
    does not take 5684 or 8080. A later option in ``args`` overrides an
    earlier one.
    """
    defaults = ["--data-dir", str(tmp_path / "data"), "--host", "127.0.0.1"]
    defaults += ["--port", "0", "--api-port", "0"]
    return CliRunner().invoke(app, ["serve", *defaults, *args], catch_exceptions=False)


def error_line(result: Result) -> str:
    """Return the last line on standard error, which carries the failure."""
    assert "Traceback" not in result.output
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture
def udp_port() -> Iterator[int]:
    """A loopback UDP port that another socket holds."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@pytest.fixture
def tcp_port() -> Iterator[int]:
    """A loopback TCP port that another socket listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--port", "70000"], id="fail/port-too-high"),
        pytest.param(["--port", "-1"], id="fail/port-negative"),
        pytest.param(["--api-port", "70000"], id="fail/api-port-too-high"),
        pytest.param(["--log-level", "bogus"], id="fail/log-level"),
        pytest.param(["--max-sessions", "0"], id="fail/max-sessions"),
        pytest.param(["--idle-timeout", "-5"], id="fail/idle-timeout"),
        pytest.param(["--idle-timeout", "inf"], id="fail/idle-timeout-infinite"),
    ],
)
def test_option_out_of_range_is_usage_error(tmp_path: Path, args: list[str]) -> None:
    result = serve(tmp_path, *args)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert args[0] in result.output


def test_bad_hostname_is_rejected(tmp_path: Path) -> None:
    result = serve(tmp_path, "--no-api", "--hostname", "bad name with spaces")

    assert result.exit_code == 1, result.output
    assert error_line(result).startswith(
        "error: cannot use --hostname 'bad name with spaces'"
    )
    assert not (tmp_path / "data" / "server-pki").exists()


def test_missing_server_files_are_named(tmp_path: Path) -> None:
    cert, key = tmp_path / "nosuch.pem", tmp_path / "nosuch.key"

    result = serve(tmp_path, "--server-cert", str(cert), "--server-key", str(key))

    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert line.startswith(f"error: cannot read server certificate chain {cert}")
    assert "No such file or directory" in line
    assert "system library" not in result.output


def test_mismatched_server_key_is_rejected(tmp_path: Path) -> None:
    _, certificate = tools.make_root("gw.example.com")
    other_key = tools.generate_key()
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    tools.write_certificate(cert, certificate)
    tools.write_private_key(key, other_key)

    result = serve(tmp_path, "--server-cert", str(cert), "--server-key", str(key))

    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert line.startswith(f"error: cannot use server key {key}")
    assert "does not belong to the first certificate" in line


def test_server_key_that_is_not_pem_is_rejected(tmp_path: Path) -> None:
    _, certificate = tools.make_root("gw.example.com")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    tools.write_certificate(cert, certificate)
    key.write_text("not a key\n")

    result = serve(tmp_path, "--server-cert", str(cert), "--server-key", str(key))

    assert result.exit_code == 1, result.output
    assert "not a PEM private key" in error_line(result)


def test_uncreatable_data_dir_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    data_dir = blocker / "data"

    result = serve(tmp_path, "--data-dir", str(data_dir))

    assert result.exit_code == 1, result.output
    assert error_line(result).startswith(
        f"error: cannot create data folder '{data_dir}': Not a directory"
    )


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(["key", "garbage-ca"], "is damaged", id="fail/damaged-ca"),
        pytest.param(["ca"], "No such file or directory", id="fail/no-ca-key"),
    ],
)
def test_damaged_development_pki_is_named(
    tmp_path: Path, files: list[str], expected: str
) -> None:
    folder = tmp_path / "data" / "server-pki"
    folder.mkdir(parents=True)
    key, certificate = tools.make_root("Fleetgate development server CA")
    if "key" in files:
        tools.write_private_key(folder / "server-ca.key", key)
    if "ca" in files:
        tools.write_certificate(folder / "server-ca.pem", certificate)
    if "garbage-ca" in files:
        (folder / "server-ca.pem").write_bytes(b"garbage")

    result = serve(tmp_path, "--no-api")

    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert f"the development server PKI in {folder}" in line
    assert expected in line
    assert "move the folder away" in line
    assert "MalformedFraming" not in line


def test_missing_postgres_driver_names_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry makes "import psycopg" raise ImportError.
    monkeypatch.setitem(sys.modules, "psycopg", None)

    result = serve(
        tmp_path, "--database-url", "postgresql://fleetgate@127.0.0.1/fleetgate"
    )

    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "the PostgreSQL driver psycopg is not installed" in line
    assert "pip install 'fleetgate[postgres]'" in line


def test_udp_port_in_use_is_reported(tmp_path: Path, udp_port: int) -> None:
    result = serve(tmp_path, "--no-api", "--port", str(udp_port))

    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert line.startswith(
        f"error: cannot start the device gateway on UDP port {udp_port} "
        "on 127.0.0.1: the port is already in use"
    )
    assert "--port" in line


def test_api_port_in_use_is_reported(tmp_path: Path, tcp_port: int) -> None:
    result = serve(tmp_path, "--api-port", str(tcp_port))

    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert line.startswith(
        f"error: cannot start the management API on 127.0.0.1 port {tcp_port}"
    )
    assert "--api-port" in line


def test_unresolvable_host_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Resolving a real name would query the machine's DNS server, so the
    # failure that bind() raises for one is injected instead.
    async def fail_to_resolve(self: Gateway) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(Gateway, "start", fail_to_resolve)

    result = serve(tmp_path, "--no-api")

    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert line.startswith("error: cannot start the device gateway: host")
    assert "does not resolve (Name or service not known)" in line
