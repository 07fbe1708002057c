"""Entry point of the ``fleetgate`` command: one Typer app per command group."""

from __future__ import annotations

import typer

from fleetgate.cli import (
    apikeys,
    cas,
    device_certificates,
    device_connections,
    device_rotate,
    device_simulate,
    devices,
    explain,
    forecast,
    manifests,
    ota,
    pki,
    projects,
    providers,
    psk,
    quarantines,
    serve,
)

app = typer.Typer(
    name="fleetgate",
    help="Certificate identity for IoT fleets over CoAP/DTLS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Click's plain help. Typer 0.29's Rich help prints "<bool>" after
    # every flag, such as --require-v3, as if it took a value.
    rich_markup_mode=None,
)
app.add_typer(projects.app, name="project")
app.add_typer(cas.app, name="ca")
app.add_typer(devices.app, name="device")
app.add_typer(pki.app, name="pki")
app.add_typer(apikeys.app, name="apikey")
app.add_typer(providers.app, name="provider")
app.add_typer(ota.app, name="ota")
app.add_typer(psk.app, name="psk")
devices.app.command("certificates")(device_certificates.certificates)
devices.app.command("connections")(device_connections.connections_)
devices.app.command("rotate")(device_rotate.rotate)
app.command("forecast")(forecast.forecast)
app.add_typer(quarantines.app, name="quarantine")
app.add_typer(manifests.app, name="manifest")
pki.app.command("explain")(explain.explain)
devices.app.command("simulate")(device_simulate.simulate)
app.command("serve")(serve.serve)


def main() -> None:
    """Run the command line."""
    app()
