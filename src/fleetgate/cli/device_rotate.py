"""``fleetgate device rotate``: renew a device certificate over the device link.

The command plays the device. It makes a new key and a CSR that names
the current certificate's project and certificate ID. It posts the CSR
to ``v1/csr`` over DTLS with the current certificate, and writes the
certificate it receives beside the new key. Nothing is written unless
the server issued a certificate for the new key, so a failed rotation
leaves the device's files as they were.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rich.markup import escape

from fleetgate.cli.common import error_console, print_message
from fleetgate.client import OCTET_STREAM, ClientError, DeviceClient
from fleetgate.errors import FleetgateError
from fleetgate.pki import tools
from fleetgate.pki.identity import device_subject, load_certificates


class KeyTypeChoice(enum.StrEnum):
    """Values of ``--key-type``."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA2048 = "rsa2048"
    ED25519 = "ed25519"


class _RotationFailed(Exception):
    """A rotation step failed; the message is printed without a traceback."""


def rotate(
    cert: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="Current device certificate (PEM)."
        ),
    ],
    key: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="Current device key (PEM)."),
    ],
    server_ca: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="CA certificate the server must chain to."
        ),
    ],
    host: Annotated[str, typer.Option(help="Host name or address of the gateway.")],
    out_cert: Annotated[Path, typer.Option(help="Where to write the new certificate.")],
    out_key: Annotated[
        Path, typer.Option(help="Where to write the new key (mode 0600).")
    ],
    port: Annotated[
        int, typer.Option(min=1, max=65_535, help="UDP port of the gateway (coaps).")
    ] = 5684,
    key_type: Annotated[
        KeyTypeChoice, typer.Option(help="Algorithm of the new key.")
    ] = KeyTypeChoice.EC_P256,
    timeout: Annotated[
        float,
        typer.Option(
            min=1, max=3600, help="Seconds to wait for the handshake and reply."
        ),
    ] = 30.0,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite --out-cert and --out-key.")
    ] = False,
) -> None:
    """Get a new certificate for a new key from the gateway, as the device does."""
    try:
        issued, new_key = _rotate(
            cert,
            key,
            server_ca,
            host=host,
            port=port,
            key_type=key_type.value,
            timeout=timeout,
            outputs=(out_cert, out_key),
            force=force,
        )
        tools.write_private_key(out_key, new_key, overwrite=force)
        tools.write_certificate(out_cert, issued, overwrite=force)
    except _RotationFailed as exc:
        error_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        error_console.print(
            f"[red]error:[/] cannot write {escape(str(exc.filename))}: {exc.strerror}",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None

    print_message(
        f"Wrote certificate {out_cert} (serial {issued.serial_number:x}, "
        f"valid until {issued.not_valid_after_utc:%Y-%m-%d %H:%M} UTC) "
        f"and key {out_key} (mode 0600)"
    )


def _rotate(
    cert: Path,
    key: Path,
    server_ca: Path,
    *,
    host: str,
    port: int,
    key_type: tools.KeyType,
    timeout: float,
    outputs: tuple[Path, Path],
    force: bool,
) -> tuple[x509.Certificate, tools.PrivateKey]:
    if not force:
        for path in outputs:
            if path.exists() or path.is_symlink():
                raise _RotationFailed(
                    f"cannot write {path}: the file exists; pass --force to "
                    "overwrite it"
                )
    try:
        current = load_certificates(cert.read_bytes())[0]
        identity = device_subject(current)
    except (OSError, FleetgateError) as exc:
        raise _RotationFailed(f"cannot read device certificate {cert}: {exc}") from exc

    new_key = tools.generate_key(key_type)
    csr = tools.make_device_csr(new_key, identity.project_id, identity.certificate_id)
    try:
        with DeviceClient(host, port, cert, key, server_ca, timeout=timeout) as device:
            reply = device.request(
                "POST",
                "v1/csr",
                csr.public_bytes(Encoding.DER),
                content_format=OCTET_STREAM,
            )
    except ClientError as exc:
        raise _RotationFailed(str(exc)) from exc

    if not reply.successful:
        detail = reply.payload.decode("utf-8", errors="replace")
        raise _RotationFailed(
            f"cannot rotate: the gateway responded {reply.code.dotted} {detail}"
        )
    try:
        issued = x509.load_der_x509_certificate(reply.payload)
    except ValueError as exc:
        raise _RotationFailed(
            "cannot rotate: the gateway's reply is not a DER certificate"
        ) from exc
    if issued.public_key() != new_key.public_key():
        raise _RotationFailed(
            "cannot rotate: the certificate the gateway sent is not for the new key"
        )
    return issued, new_key
