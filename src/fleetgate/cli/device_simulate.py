"""``fleetgate device simulate``: play a device built on Golioth's firmware SDK.

The command runs :class:`~fleetgate.client.simulate.DeviceSimulator`
against a gateway, with a device certificate or a PSK, and prints one
line per event, or one JSON object per line with ``--json``. It runs until Ctrl-C, SIGTERM or ``--duration``,
then closes its DTLS session and exits 0.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from fleetgate.cli.common import console, error_console
from fleetgate.client import ClientError, CredentialsError, PskCredentials
from fleetgate.client.observing import ObservingClient
from fleetgate.client.simulate import (
    KEEPALIVE_INTERVAL,
    RESPONSE_TIMEOUT,
    DeviceSimulator,
    SimulatorEvent,
    SimulatorOptions,
)
from fleetgate.client.simulated_firmware import SimulatedFirmware

# Rich styles of the event kinds worth telling apart at a glance.
_STYLES = {
    "connected": "green",
    "disconnected": "red",
    "warning": "yellow",
    "reboot": "yellow",
    "settings": "cyan",
    "rpc": "magenta",
    "ota": "blue",
}


def simulate(
    host: Annotated[str, typer.Option(help="Host name or address of the gateway.")],
    server_ca: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="CA certificate the server must chain to; needed with --cert, "
            "not used with --psk-id.",
        ),
    ] = None,
    port: Annotated[
        int, typer.Option(min=1, max=65_535, help="UDP port of the gateway (coaps).")
    ] = 5684,
    cert: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Device certificate (PEM)."),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Device private key (PEM)."),
    ] = None,
    chain: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Intermediate certificates to send after the device certificate "
            "(PEM); repeat for several files.",
        ),
    ] = None,
    psk_id: Annotated[
        str | None,
        typer.Option(help="PSK identity, <psk-id>@<project-id>."),
    ] = None,
    psk: Annotated[
        str | None,
        typer.Option(
            help="Pre-shared key as hex digits, as 'fleetgate psk add' prints."
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds to run; without it, until Ctrl-C."),
    ] = None,
    interval: Annotated[
        float,
        typer.Option(
            min=0.05,
            help="Seconds between readings, until a LOOP_DELAY_S setting changes it.",
        ),
    ] = 5.0,
    logs_per_interval: Annotated[
        int,
        typer.Option(min=0, max=1000, help="Log entries posted each interval."),
    ] = 1,
    timeout: Annotated[
        float,
        typer.Option(
            min=0.5,
            help="Seconds a request may go unanswered before the session ends.",
        ),
    ] = RESPONSE_TIMEOUT,
    keepalive: Annotated[
        float,
        typer.Option(min=0.5, help="Seconds without a response before a probe."),
    ] = KEEPALIVE_INTERVAL,
    firmware_version: Annotated[
        str, typer.Option(help="Firmware version the device starts with.")
    ] = "1.0.0",
    package: Annotated[
        str, typer.Option(help="Firmware package the device updates over OTA.")
    ] = "main",
    json_lines: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per event.")
    ] = False,
) -> None:
    """Play a device as Golioth's SDK examples do, until stopped."""
    if psk_id is not None or psk is not None:
        if cert is not None or key is not None:
            _fail("cannot connect: pass either --cert and --key or --psk-id and --psk")
        connect = _psk_client(host, port, psk_id, psk, timeout)
    else:
        connect = _certificate_client(
            host, port, cert, key, server_ca, chain or [], timeout
        )

    options = SimulatorOptions(
        interval=interval,
        duration=duration,
        logs_per_interval=logs_per_interval,
        keepalive=keepalive,
    )
    printer = _print_json if json_lines else _print_line
    firmware = SimulatedFirmware(package, firmware_version)
    simulator = DeviceSimulator(connect, printer, options, firmware=firmware)
    with _stop_on_signals(simulator):
        try:
            simulator.run()
        except ClientError as exc:
            _fail(str(exc))


def _certificate_client(
    host: str,
    port: int,
    cert: Path | None,
    key: Path | None,
    server_ca: Path | None,
    chain: list[Path],
    timeout: float,
) -> Callable[[], ObservingClient]:
    if cert is None or key is None:
        _fail(
            "cannot connect: pass --cert and --key, or --psk-id and --psk, "
            "with the device's credentials"
        )
    if server_ca is None:
        _fail(
            "cannot connect: pass --server-ca with the CA certificate that the "
            "server's certificate chains to"
        )

    def connect() -> ObservingClient:
        return ObservingClient(
            host, port, cert, key, server_ca, chain=chain, timeout=timeout
        )

    return connect


def _psk_client(
    host: str, port: int, identity: str | None, hex_key: str | None, timeout: float
) -> Callable[[], ObservingClient]:
    if identity is None or hex_key is None:
        _fail("cannot connect: pass both --psk-id and --psk")
    try:
        key = bytes.fromhex(hex_key)
    except ValueError:
        # The value is a secret, so it is not repeated here.
        _fail(
            "cannot use --psk: it must be hex digits, as 'fleetgate psk add' "
            "prints the key"
        )
    try:
        credentials = PskCredentials(identity, key)
    except CredentialsError as exc:
        _fail(str(exc))

    def connect() -> ObservingClient:
        return ObservingClient(host, port, psk=credentials, timeout=timeout)

    return connect


def _fail(message: str) -> NoReturn:
    error_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def _stop_on_signals(simulator: DeviceSimulator) -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        simulator.stop()

    previous = {
        signum: signal.signal(signum, stop)
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _print_line(event: SimulatorEvent) -> None:
    style = _STYLES.get(event.kind, "bold")
    stamp = event.time.astimezone().strftime("%H:%M:%S.%f")[:-3]
    console.print(
        f"[dim]{stamp}[/] [{style}]{event.kind:<12}[/] {escape(event.message)}",
        soft_wrap=True,
    )


def _print_json(event: SimulatorEvent) -> None:
    line: dict[str, Any] = {
        "time": event.time.isoformat(),
        "event": event.kind,
        "message": event.message,
        **event.details,
    }
    sys.stdout.write(json.dumps(line, default=str) + "\n")
    sys.stdout.flush()
