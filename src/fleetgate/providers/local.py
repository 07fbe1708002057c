"""The ``local`` provider: a CA key and certificate in files, for labs.

The files are made by ``fleetgate pki root`` (or ``intermediate``), by
``fleetgate provider set --generate``, or brought from elsewhere; the
settings store their absolute paths, never the key itself. The key is
read from disk for every issuance, so replacing the files takes effect
at once in every process. The key must be an unencrypted PEM file, and
it should have mode 0600: a looser mode is reported by
:meth:`LocalProvider.status`.

Limitation: keys in a PKCS#11 token (such as SoftHSM2) are not supported
yet; the key has to be a file.
"""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetgate.errors import FleetgateError, InvalidInput, ProviderFailed
from fleetgate.pki import issue, tools
from fleetgate.pki.identity import load_certificates
from fleetgate.pki.rules import is_self_signed
from fleetgate.pki.verify import check_ca_certificate
from fleetgate.providers.base import (
    IssuedChain,
    IssueRequest,
    PkiProvider,
    ProviderCa,
    ProviderHealth,
    ProviderKind,
    ProviderState,
)

# Mode bits that let anyone but the owner read or write the key.
_SHARED_MODE_BITS = stat.S_IRWXG | stat.S_IRWXO


class LocalProvider(PkiProvider):
    """Issues device certificates with a CA key read from a file."""

    kind = ProviderKind.LOCAL

    def __init__(self, ca_key: Path, ca_cert: Path, *, days: int) -> None:
        if not 1 <= days <= tools.MAX_DAYS:
            raise InvalidInput(
                f"cannot use validity of {days} days: expected 1-{tools.MAX_DAYS}"
            )
        self.ca_key = ca_key
        self.ca_cert = ca_cert
        self.days = days

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> LocalProvider:
        """Build the provider from stored settings."""
        try:
            return cls(
                Path(str(settings["ca_key"])),
                Path(str(settings["ca_cert"])),
                days=int(settings.get("days", issue.DEFAULT_DAYS)),
            )
        except (KeyError, ValueError) as exc:
            raise ProviderFailed(
                f"cannot use local provider settings: {exc!r} is missing or "
                "invalid; set the provider again"
            ) from exc

    def public_settings(self) -> dict[str, Any]:
        """Return the file paths and validity; the key stays in its file."""
        return {
            "ca_key": str(self.ca_key),
            "ca_cert": str(self.ca_cert),
            "days": self.days,
        }

    def list_ca_certificates(self) -> list[ProviderCa]:
        """Return the CA certificate file's certificate."""
        return [ProviderCa(self._load_certificate(), name=str(self.ca_cert))]

    def issue(self, request: IssueRequest) -> IssuedChain:
        """Sign a client certificate for the request with the CA key."""
        key, certificate = self.load_ca()
        issued = issue.issue_client_certificate(
            request.csr,
            project_id=request.project_id,
            certificate_id=request.certificate_id,
            issuer_key=key,
            issuer_cert=certificate,
            days=self.days,
        )
        return IssuedChain(issued, (certificate,))

    def status(self) -> ProviderHealth:
        """Check that the key matches the certificate and the CA is valid."""
        try:
            self.load_ca()
        except FleetgateError as exc:
            return ProviderHealth(ProviderState.ERROR, error=exc.message)
        mode = self.ca_key.stat().st_mode
        if mode & _SHARED_MODE_BITS:
            return ProviderHealth(
                ProviderState.ERROR,
                ca_count=1,
                error=f"CA key {self.ca_key} has mode {stat.S_IMODE(mode):04o}; "
                f"run 'chmod 600 {self.ca_key}'",
            )
        return ProviderHealth(ProviderState.CONNECTED, ca_count=1)

    def load_ca(self) -> tuple[tools.PrivateKey, x509.Certificate]:
        """Read the CA key and certificate and check that they belong together."""
        certificate = self._load_certificate()
        try:
            pem = self.ca_key.read_bytes()
        except OSError as exc:
            raise ProviderFailed(
                f"cannot read CA key {self.ca_key}: {exc.strerror}"
            ) from exc
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (TypeError, ValueError) as exc:
            raise ProviderFailed(
                f"cannot use CA key {self.ca_key}: not an unencrypted PEM private key"
            ) from exc
        if not isinstance(key, tools.PrivateKey):
            raise ProviderFailed(
                f"cannot use CA key {self.ca_key}: {type(key).__name__} keys cannot "
                "sign certificates; use EC, RSA or Ed25519"
            )
        if key.public_key() != certificate.public_key():
            raise ProviderFailed(
                f"cannot use CA key {self.ca_key}: it does not match the public "
                f"key of {self.ca_cert}"
            )
        return key, certificate

    def _load_certificate(self) -> x509.Certificate:
        try:
            certificates = load_certificates(self.ca_cert.read_bytes())
        except OSError as exc:
            raise ProviderFailed(
                f"cannot read CA certificate {self.ca_cert}: {exc.strerror}"
            ) from exc
        except FleetgateError as exc:
            raise ProviderFailed(f"{exc.message} (file {self.ca_cert})") from exc
        if len(certificates) != 1:
            raise ProviderFailed(
                f"cannot use CA certificate {self.ca_cert}: it contains "
                f"{len(certificates)} certificates, expected one"
            )
        certificate = certificates[0]
        try:
            check_ca_certificate(
                certificate,
                cert_type="root" if is_self_signed(certificate) else "intermediate",
                now=dt.datetime.now(dt.UTC),
            )
        except FleetgateError as exc:
            raise ProviderFailed(f"{exc.message} (file {self.ca_cert})") from exc
        return certificate


def generate_ca(folder: Path, project_id: str) -> tuple[Path, Path]:
    """Make a new root CA for a project's local provider; the key gets mode 0600.

    Raises InvalidInput when the files exist, so a CA is never replaced
    by accident.
    """
    key_path = folder / f"{project_id}-ca.key.pem"
    cert_path = folder / f"{project_id}-ca.crt.pem"
    for path in (key_path, cert_path):
        if path.exists() or path.is_symlink():
            raise InvalidInput(
                f"cannot generate a CA: {path} exists; pass it with --ca-key "
                "and --ca-cert to use it, or remove it"
            )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key, certificate = tools.make_root(f"{project_id} device CA")
    tools.write_private_key(key_path, key)
    tools.write_certificate(cert_path, certificate)
    return key_path.resolve(), cert_path.resolve()
