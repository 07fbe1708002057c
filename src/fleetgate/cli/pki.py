"""``fleetgate pki``: make a root, an intermediate and device certificates.

The files are what the documented openssl recipe produces, for labs and
tests; a production fleet keeps its CA keys in a PKI provider or an HSM.
Existing files are never overwritten unless ``--force`` is given, and no
file is written until every output path has been checked.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Literal

import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.console import Console

from fleetgate.errors import FleetgateError
from fleetgate.pki import tools
from fleetgate.pki.identity import load_certificates
from fleetgate.pki.rules import is_self_signed
from fleetgate.pki.verify import check_ca_certificate

app = typer.Typer(
    help="Make an offline PKI: a root, an intermediate and device certificates.",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)


class KeyType(enum.StrEnum):
    """Key algorithms the verification policy allows."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA2048 = "rsa2048"
    ED25519 = "ed25519"


OutDir = Annotated[
    Path, typer.Option(help="Directory to write the files to; created if missing.")
]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing files.")]
CommonNameOption = Annotated[
    str,
    typer.Option(help=f"Subject CN, 1-{tools.MAX_COMMON_NAME_LENGTH} characters."),
]
DaysOption = Annotated[
    int, typer.Option(min=1, max=tools.MAX_DAYS, help="Validity in days.")
]
KeyTypeOption = Annotated[KeyType, typer.Option(help="Algorithm of the new key.")]
IssuerKey = Annotated[
    Path, typer.Option(help="PEM private key of the issuing CA (unencrypted).")
]
IssuerCert = Annotated[Path, typer.Option(help="PEM certificate of the issuing CA.")]


class _CommandError(Exception):
    """A user error, printed without a traceback."""


def _fail(message: str) -> typer.Exit:
    error_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=1)


def _check_name_stem(stem: str) -> None:
    if not stem or stem in (".", "..") or "/" in stem or "\0" in stem:
        raise _CommandError(
            f"cannot use --name {stem!r}: expected a file name stem without "
            "'/', such as root; use --out-dir to choose the folder"
        )


def _check_common_name(common_name: str) -> None:
    try:
        tools.validate_common_name(common_name)
    except FleetgateError as exc:
        raise _CommandError(f"{exc.message}; pass another --common-name") from exc


def _prepare_paths(out_dir: Path, names: list[str], *, force: bool) -> list[Path]:
    paths = [out_dir / name for name in names]
    if not force:
        for path in paths:
            if path.exists() or path.is_symlink():
                raise _CommandError(
                    f"cannot write {path}: the file exists; "
                    "pass --force to overwrite it"
                )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _CommandError(
            f"cannot create directory {out_dir}: {exc.strerror}"
        ) from exc
    return paths


def _read(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _CommandError(f"cannot read {label} {path}: {exc.strerror}") from exc


def _load_issuer(
    key_path: Path, cert_path: Path
) -> tuple[tools.PrivateKey, x509.Certificate]:
    key_pem = _read(key_path, "issuer key")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:
        raise _CommandError(
            f"cannot use issuer key {key_path}: it is encrypted; write a "
            "decrypted copy with 'openssl pkey -in KEY -out PLAIN_KEY'"
        ) from exc
    except ValueError as exc:
        raise _CommandError(
            f"cannot use issuer key {key_path}: not a PEM private key"
        ) from exc
    if not isinstance(key, tools.PrivateKey):
        raise _CommandError(
            f"cannot use issuer key {key_path}: {type(key).__name__} keys "
            "cannot sign; use EC, RSA or Ed25519"
        )

    try:
        certificates = load_certificates(_read(cert_path, "issuer certificate"))
    except FleetgateError as exc:
        raise _CommandError(f"{exc.message} (file {cert_path})") from exc
    if len(certificates) != 1:
        raise _CommandError(
            f"cannot use issuer certificate {cert_path}: it contains "
            f"{len(certificates)} certificates, expected one"
        )
    cert = certificates[0]
    if cert.public_key() != key.public_key():
        raise _CommandError(
            f"cannot use issuer key {key_path}: it does not match the public "
            f"key of {cert_path}"
        )
    cert_type: Literal["root", "intermediate"] = (
        "root" if is_self_signed(cert) else "intermediate"
    )
    try:
        check_ca_certificate(cert, cert_type=cert_type)
    except FleetgateError as exc:
        raise _CommandError(f"{exc.message} (file {cert_path})") from exc
    return key, cert


def _report(title: str, written: list[tuple[str, Path]]) -> None:
    console.print(f"[bold]{title}[/bold]")
    for label, path in written:
        console.print(f"  {label:<12} {path}", highlight=False)


@app.command()
def root(
    out_dir: OutDir = Path("."),
    name: Annotated[str, typer.Option(help="File name stem.")] = "root",
    common_name: CommonNameOption = "Root CA",
    key_type: KeyTypeOption = KeyType.EC_P256,
    days: DaysOption = tools.DEFAULT_CA_DAYS,
    force: Force = False,
) -> None:
    """Make a self-signed root CA key and certificate."""
    try:
        _check_name_stem(name)
        _check_common_name(common_name)
        key_path, cert_path = _prepare_paths(
            out_dir, [f"{name}.key.pem", f"{name}.crt.pem"], force=force
        )
        key, cert = tools.make_root(common_name, key_type.value, days=days)
        tools.write_private_key(key_path, key, overwrite=force)
        tools.write_certificate(cert_path, cert, overwrite=force)
    except _CommandError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write {exc.filename}: {exc.strerror}") from None
    _report(
        f"Root CA {common_name!r}",
        [("key (0600)", key_path), ("certificate", cert_path)],
    )


@app.command()
def intermediate(
    issuer_key: IssuerKey,
    issuer_cert: IssuerCert,
    out_dir: OutDir = Path("."),
    name: Annotated[str, typer.Option(help="File name stem.")] = "intermediate",
    common_name: CommonNameOption = "Intermediate CA",
    path_length: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=tools.MAX_CA_PATH_LENGTH,
            help="basicConstraints pathLen; unlimited if unset.",
        ),
    ] = None,
    key_type: KeyTypeOption = KeyType.EC_P256,
    days: DaysOption = tools.DEFAULT_CA_DAYS,
    force: Force = False,
) -> None:
    """Make an intermediate CA key and certificate signed by an issuer."""
    try:
        _check_name_stem(name)
        _check_common_name(common_name)
        signing_key, signing_cert = _load_issuer(issuer_key, issuer_cert)
        key_path, cert_path = _prepare_paths(
            out_dir, [f"{name}.key.pem", f"{name}.crt.pem"], force=force
        )
        key, cert = tools.make_intermediate(
            signing_key,
            signing_cert,
            common_name,
            key_type.value,
            days=days,
            path_length=path_length,
        )
        tools.write_private_key(key_path, key, overwrite=force)
        tools.write_certificate(cert_path, cert, overwrite=force)
    except _CommandError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write {exc.filename}: {exc.strerror}") from None
    _report(
        f"Intermediate CA {common_name!r}",
        [("key (0600)", key_path), ("certificate", cert_path)],
    )


@app.command()
def device(
    project: Annotated[
        str, typer.Option("--project", "-p", help="Project ID, written to subject O.")
    ],
    certificate_id: Annotated[
        str, typer.Option(help="Certificate ID, written to subject CN.")
    ],
    issuer_key: IssuerKey,
    issuer_cert: IssuerCert,
    out_dir: OutDir = Path("."),
    key_type: KeyTypeOption = KeyType.EC_P256,
    days: DaysOption = tools.DEFAULT_DEVICE_DAYS,
    v3: Annotated[
        bool,
        typer.Option(
            "--v3", help="Issue X.509 v3 with clientAuth; default v1, no extensions."
        ),
    ] = False,
    force: Force = False,
) -> None:
    """Make a device key, CSR and certificate for one certificate ID."""
    try:
        try:
            device_key = tools.make_device_key(key_type.value)
            csr = tools.make_device_csr(device_key, project, certificate_id)
        except FleetgateError as exc:
            raise _CommandError(exc.message) from exc
        signing_key, signing_cert = _load_issuer(issuer_key, issuer_cert)
        # The certificate ID grammar has no '/', so the stem stays in out_dir.
        key_path, csr_path, cert_path = _prepare_paths(
            out_dir,
            [f"{certificate_id}.{suffix}.pem" for suffix in ("key", "csr", "crt")],
            force=force,
        )
        cert = tools.sign_device_csr(
            csr, signing_key, signing_cert, days=days, version="v3" if v3 else "v1"
        )
        tools.write_private_key(key_path, device_key, overwrite=force)
        tools.write_csr(csr_path, csr, overwrite=force)
        tools.write_certificate(cert_path, cert, overwrite=force)
    except _CommandError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write {exc.filename}: {exc.strerror}") from None
    _report(
        f"Device {certificate_id!r} of project {project!r}",
        [("key (0600)", key_path), ("CSR", csr_path), ("certificate", cert_path)],
    )
