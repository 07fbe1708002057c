"""The certificate the gateway presents to devices.

On first start ``fleetgate serve`` makes a development server CA and a
server certificate under ``<data-dir>/server-pki``: devices must trust
``server-ca.pem``. The server certificate names ``localhost``,
``127.0.0.1``, ``::1`` and every ``--hostname``; when a hostname is
added later, a new server certificate is issued by the same CA, so
devices keep working. Operators with their own PKI pass a certificate
chain and key instead, and nothing is generated.

The development CA key stays on disk beside the certificates (mode
0600). It is meant for labs and first steps: production deployments
should bring a server certificate from their own CA.

Both entry points check their files up front and raise
:class:`~fleetgate.errors.StartupFailed` with the file and the fix, so
``fleetgate serve`` never shows OpenSSL's own error queue, which names
no file (``[('system library', '', '')]`` for a missing one).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import logging
import re
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetgate.errors import InvalidInput, StartupFailed
from fleetgate.gateway.tls import ServerCredentials
from fleetgate.pki.identity import load_certificates
from fleetgate.pki.tools import random_serial, write_certificate, write_private_key

log = logging.getLogger(__name__)

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=397)
# Reissue the server certificate when less than this much validity is left.
RENEW_BEFORE = dt.timedelta(days=30)
# A host name label: 1-63 letters, digits and hyphens, not starting or
# ending with a hyphen (RFC 1035, section 2.3.1, with the leading digit
# that RFC 1123, section 2.1 allows).
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# RFC 1035, section 2.3.4 allows 255 octets on the wire, which is 253
# characters of dotted text without the final dot.
MAX_HOSTNAME_LENGTH = 253


@dataclasses.dataclass(frozen=True)
class ServerIdentity:
    """Credentials to present, and the root devices must trust (if known)."""

    credentials: ServerCredentials
    root_path: Path | None
    generated: bool


def load_server_identity(chain_path: Path, key_path: Path) -> ServerIdentity:
    """Check an operator's certificate chain and key, and wrap them for the gateway.

    Raises StartupFailed when a file cannot be read, is not PEM, or the
    key does not belong to the first certificate of the chain.
    """
    chain_pem = _read(chain_path, "server certificate chain", "--server-cert")
    key_pem = _read(key_path, "server key", "--server-key")
    # OpenSSL reads the chain file as PEM only, though Fleetgate's
    # certificate loader would also accept one DER certificate.
    if b"-----BEGIN CERTIFICATE-----" not in chain_pem:
        raise StartupFailed(
            f"cannot use server certificate chain {chain_path}: it contains no "
            "PEM certificate; pass --server-cert with a PEM file, server "
            "certificate first"
        )
    try:
        leaf = load_certificates(chain_pem)[0]
    except InvalidInput as exc:
        raise StartupFailed(
            f"cannot use server certificate chain {chain_path}: {exc.message}"
        ) from exc

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:
        raise StartupFailed(
            f"cannot use server key {key_path}: it is encrypted; write a "
            "decrypted copy with 'openssl pkey -in KEY -out PLAIN_KEY' and "
            "keep it at mode 0600"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise StartupFailed(
            f"cannot use server key {key_path}: not a PEM private key that "
            "Fleetgate can load; pass --server-key with the key of --server-cert"
        ) from exc
    if key.public_key() != leaf.public_key():
        raise StartupFailed(
            f"cannot use server key {key_path}: it does not belong to the first "
            f"certificate of {chain_path}, whose public key differs; pass the "
            "key that was made with that certificate"
        )
    return ServerIdentity(
        ServerCredentials(chain_path, key_path), root_path=None, generated=False
    )


def validate_hostname(name: str) -> str:
    """Return ``name`` if it is an IP address or a DNS host name, else raise."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return name
    labels = name.removesuffix(".").split(".")
    if len(name) > MAX_HOSTNAME_LENGTH or not all(
        _DNS_LABEL.fullmatch(label) for label in labels
    ):
        raise InvalidInput(
            f"cannot use --hostname {name!r}: expected an IP address or a DNS "
            "name of dot-separated labels of 1-63 letters, digits and inner "
            f"hyphens, at most {MAX_HOSTNAME_LENGTH} characters"
        )
    return name


def ensure_development_identity(
    folder: Path, hostnames: tuple[str, ...] = ()
) -> ServerIdentity:
    """Create or reuse the development server CA and a server certificate.

    Raises InvalidInput for a hostname that is neither an IP address nor
    a DNS name, and StartupFailed when the files cannot be written or read.
    """
    for name in hostnames:
        validate_hostname(name)
    try:
        return _ensure_development_identity(folder, hostnames)
    except OSError as exc:
        raise StartupFailed(
            f"cannot set up the development server PKI in {folder}: "
            f"{exc.filename or folder}: {exc.strerror}; fix the folder's "
            "permissions, or move the folder away to make a new CA, which "
            "devices must then trust instead"
        ) from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # cryptography's message names its parser's internal error.
        log.debug("development server PKI load failed: %s", exc)
        raise StartupFailed(
            f"cannot load the development server PKI in {folder}: a key or "
            "certificate there is damaged or of the wrong type; move the "
            "folder away to make a new CA, which devices must then trust instead"
        ) from exc


def _ensure_development_identity(
    folder: Path, hostnames: tuple[str, ...]
) -> ServerIdentity:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key_path = folder / "server-ca.key"
    ca_path = folder / "server-ca.pem"
    key_path = folder / "server.key"
    chain_path = folder / "server-chain.pem"
    names = tuple(dict.fromkeys(DEFAULT_NAMES + hostnames))

    generated = False
    if not ca_path.exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _make_ca(ca_key)
        write_private_key(ca_key_path, ca_key, overwrite=True)
        write_certificate(ca_path, ca_cert, overwrite=True)
        log.info("created development server CA path=%s", ca_path)
        generated = True
    ca_key = _load_ec_key(ca_key_path)
    ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())

    if generated or _needs_new_server_certificate(chain_path, names):
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _make_server_certificate(key, ca_key, ca_cert, names)
        write_private_key(key_path, key, overwrite=True)
        write_certificate(chain_path, certificate, overwrite=True)
        log.info(
            "issued development server certificate names=%s path=%s",
            ",".join(names),
            chain_path,
        )
        generated = True

    return ServerIdentity(
        credentials=ServerCredentials(chain_path, key_path),
        root_path=ca_path,
        generated=generated,
    )


def _read(path: Path, label: str, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StartupFailed(
            f"cannot read {label} {path}: {exc.strerror}; pass {option} with "
            "a readable PEM file"
        ) from exc


def _load_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"cannot use {path}: the development CA key must be ECDSA")
    return key


def _needs_new_server_certificate(chain_path: Path, names: tuple[str, ...]) -> bool:
    if not chain_path.exists():
        return True
    certificate = x509.load_pem_x509_certificate(chain_path.read_bytes())
    if certificate.not_valid_after_utc - _now() < RENEW_BEFORE:
        return True
    try:
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        return True
    present = {str(value) for value in san.get_values_for_type(x509.DNSName)}
    present |= {str(value) for value in san.get_values_for_type(x509.IPAddress)}
    return not all(str(_general_name(name).value) in present for name in names)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _make_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fleetgate development"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Fleetgate development server CA"),
        ]
    )
    now = _now()
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _make_server_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: tuple[str, ...],
) -> x509.Certificate:
    now = _now()
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(name) for name in names]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
