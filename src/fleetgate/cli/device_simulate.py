"""``fleetgate device simulate``: play a device built on Golioth's firmware SDK.

The command runs :class:`~fleetgate.client.simulate.DeviceSimulator`
against a gateway and prints one line per event, or one JSON object per
line with ``--json``. It runs until Ctrl-C, SIGTERM or ``--duration``,
then closes its DTLS session and exits 0.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.markup import escape

from fleetgate.cli.common import console, error_console
from fleetgate.client import ClientError
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
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="CA certificate the server must chain to."
        ),
    ],
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
        typer.Option(help="PSK identity, such as sensor-1@acme-sensors."),
    ] = None,
    psk: Annotated[
        str | None, typer.Option(help="Pre-shared key as hex digits.")
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
        _fail(
            "cannot use --psk-id and --psk: this client supports only "
            "certificate credentials so far, so pass --cert and --key"
        )
    if cert is None or key is None:
        _fail("cannot connect: pass --cert and --key with the device's credentials")
    assert cert is not None and key is not None

    def connect() -> ObservingClient:
        return ObservingClient(
            host, port, cert, key, server_ca, chain=chain or (), timeout=timeout
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


def _fail(message: str) -> None:
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
