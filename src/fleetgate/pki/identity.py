"""Device identity in a certificate subject: project in ``O``, ID in ``CN``.

A device subject carries exactly one organization (``O``), which is the
project ID, and exactly one common name (``CN``), which is the
certificate ID. Other attributes (C, ST, OU, ...) are allowed and
ignored. Both IDs are matched exactly as written: no trimming, no case
folding, no Unicode normalization. A subject that does not fit these
rules names no device, and the chain is rejected before any signature
is checked.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from fleetgate.errors import ChainRejected, InvalidCertificate, InvalidInput, Reason

log = logging.getLogger(__name__)

# A project ID is a slug, so it is safe in URLs, logs and file names.
_PROJECT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# Covers serial numbers, MAC addresses, UUIDs and e-mail-like IDs while
# keeping out spaces, slashes, quotes and anything outside ASCII.
_CERTIFICATE_ID = re.compile(r"[A-Za-z0-9_.:@+-]{1,128}")

_PEM_BEGIN = b"-----BEGIN "
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
# Maximum length of a value's repr in an error message.
_MAX_SHOWN = 80


def _shown(value: str) -> str:
    """Return the repr of a value for an error message, shortened if long."""
    text = repr(value)
    if len(text) > _MAX_SHOWN:
        return text[: _MAX_SHOWN - 3] + "..."
    return text


def validate_project_id(value: str) -> str:
    """Return ``value`` unchanged if it is a valid project ID, else raise."""
    if _PROJECT_ID.fullmatch(value) is None:
        raise InvalidInput(
            f"cannot use project ID {_shown(value)}: expected 1-63 characters "
            "from a-z, 0-9 and '-', starting with a letter or digit"
        )
    return value


def validate_certificate_id(value: str) -> str:
    """Return ``value`` unchanged if it is a valid certificate ID, else raise."""
    if _CERTIFICATE_ID.fullmatch(value) is None:
        raise InvalidInput(
            f"cannot use certificate ID {_shown(value)}: expected 1-128 "
            "characters from ASCII letters, digits and '-_.:@+'",
            reason=Reason.INVALID_CERTIFICATE_ID,
        )
    return value


def fingerprint(cert: x509.Certificate) -> str:
    """Return the lowercase hex SHA-256 of the certificate's DER encoding."""
    return cert.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class DeviceSubject:
    """The project ID and certificate ID a device certificate names."""

    project_id: str
    certificate_id: str


class _SubjectError(Exception):
    """A subject that names no device; translated by each public caller."""

    def __init__(
        self, reason: Reason, detail: str, *, project_id: str | None = None
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.project_id = project_id


def _single_value(name: x509.Name, oid: x509.ObjectIdentifier, label: str) -> str:
    attributes = name.get_attributes_for_oid(oid)
    if len(attributes) != 1:
        raise _SubjectError(
            Reason.BAD_SUBJECT,
            f"subject {_shown(name.rfc4514_string())} has {len(attributes)} "
            f"{label} attributes, expected exactly one",
        )
    value = attributes[0].value
    # Only a certificate with a malformed string type yields bytes here.
    if not isinstance(value, str):
        raise _SubjectError(
            Reason.BAD_SUBJECT, f"subject {label} is not a character string"
        )
    return value


def read_device_name(name: x509.Name) -> DeviceSubject:
    """Return the IDs a device subject or CSR subject names.

    Raises :class:`InvalidInput` with the reason that
    :func:`device_subject` would report for a certificate.
    """
    try:
        return _read_device_name(name)
    except _SubjectError as exc:
        raise InvalidInput(
            f"cannot read device subject: {exc.detail}", reason=exc.reason
        ) from None


def _read_device_name(name: x509.Name) -> DeviceSubject:
    organization = _single_value(name, NameOID.ORGANIZATION_NAME, "O")
    common_name = _single_value(name, NameOID.COMMON_NAME, "CN")

    if _PROJECT_ID.fullmatch(organization) is None:
        raise _SubjectError(
            Reason.UNKNOWN_PROJECT,
            f"subject O {_shown(organization)} is not a valid project ID",
        )
    if _CERTIFICATE_ID.fullmatch(common_name) is None:
        raise _SubjectError(
            Reason.INVALID_CERTIFICATE_ID,
            f"subject CN {_shown(common_name)} is not a valid certificate ID "
            "(1-128 characters from ASCII letters, digits and '-_.:@+')",
            project_id=organization,
        )
    return DeviceSubject(project_id=organization, certificate_id=common_name)


def device_subject(cert: x509.Certificate) -> DeviceSubject:
    """Return the IDs a device certificate names, or raise ChainRejected."""
    try:
        # cryptography parses the subject only when it is first read.
        name = cert.subject
    # TypeError: an attribute in a type cryptography refuses to model,
    # such as a CN encoded as a BIT STRING.
    except (ValueError, TypeError) as exc:
        log.debug("certificate subject parse failed: %s", exc)
        raise ChainRejected(
            "cannot identify device: the subject is malformed",
            reason=Reason.MALFORMED_CERTIFICATE,
            fingerprint=fingerprint(cert),
        ) from exc
    try:
        return _read_device_name(name)
    except _SubjectError as exc:
        raise ChainRejected(
            f"cannot identify device: {exc.detail}",
            reason=exc.reason,
            project_id=exc.project_id,
            fingerprint=fingerprint(cert),
        ) from None


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Parse one or more PEM certificates, or one DER certificate.

    PEM input may contain only CERTIFICATE blocks, so that a private key
    pasted by mistake is rejected rather than silently ignored.
    """
    if not data.strip():
        raise InvalidCertificate("cannot load certificate: the input is empty")
    if _PEM_BEGIN not in data:
        return [_load_der(data)]

    # cryptography skips a final block that has no END line, so count the
    # BEGIN lines to notice a truncated bundle.
    blocks = data.count(_PEM_BEGIN)
    certificate_blocks = data.count(_PEM_CERTIFICATE)
    if blocks != certificate_blocks:
        raise InvalidCertificate(
            "cannot load certificates: the PEM input contains "
            f"{blocks - certificate_blocks} block(s) that are not "
            "CERTIFICATE, such as a private key"
        )
    try:
        certificates = x509.load_pem_x509_certificates(data)
    # InvalidVersion, raised for a version other than v1 or v3 (such as
    # v2), is not a ValueError.
    except (ValueError, x509.InvalidVersion) as exc:
        # cryptography's message is its ASN.1 parser's internal error,
        # such as "ParseError { kind: UnexpectedTag ... }".
        log.debug("PEM certificate parse failed: %s", exc)
        raise InvalidCertificate(
            "cannot load certificates: a PEM CERTIFICATE block does not "
            "contain a valid certificate; check that the file is complete"
        ) from exc
    if len(certificates) != blocks:
        raise InvalidCertificate(
            f"cannot load certificates: {blocks} BEGIN line(s) but only "
            f"{len(certificates)} complete certificate(s); is the input truncated?"
        )
    return certificates


def _load_der(data: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion) as exc:
        log.debug("DER certificate parse failed: %s", exc)
        raise InvalidCertificate(
            "cannot load certificate: the input is not a PEM or DER certificate"
        ) from exc
