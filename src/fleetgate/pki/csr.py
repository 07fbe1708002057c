"""Certificate signing requests from devices that rotate their certificate.

A device sends a DER PKCS#10 request (RFC 2986) over its authenticated
connection. The request is accepted when:

- it parses as DER and its self-signature verifies, which proves that
  the device has the new private key (RFC 2986, section 3);
- its subject names, if it names anything, the device's own project in
  ``O`` and its own certificate ID in ``CN``. Either may be absent,
  because the issued certificate takes both from the connection, never
  from the request. Golioth's firmware SDK sample sends an empty subject;
- its key and signature algorithm pass the device certificate policy
  (:mod:`fleetgate.pki.rules`).

Other subject attributes and requested extensions are ignored: what the
certificate contains is the issuing provider's decision.
"""

from __future__ import annotations

import dataclasses
import logging

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import NameOID

from fleetgate.errors import (
    CsrPolicyViolation,
    DeviceRejected,
    InvalidCsr,
    Reason,
)
from fleetgate.pki import rules

log = logging.getLogger(__name__)

# A PKCS#10 request with an RSA-4096 key and a long subject stays well
# under this. Larger bodies are rejected before parsing.
MAX_CSR_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class DeviceIdentity:
    """The project and certificate ID of the connection that sent a CSR."""

    project_id: str
    certificate_id: str
    device_id: str


def load_device_csr(
    der: bytes, device: DeviceIdentity
) -> x509.CertificateSigningRequest:
    """Parse a device's DER CSR and check it against the rotation rules.

    Raises InvalidCsr (malformed, bad signature), CsrPolicyViolation (key
    or signature algorithm) or DeviceRejected (subject names another
    project or certificate ID).
    """
    if not der:
        raise InvalidCsr("cannot read CSR: the request body is empty")
    if len(der) > MAX_CSR_BYTES:
        raise InvalidCsr(
            f"cannot read CSR: {len(der)} bytes exceeds the maximum of {MAX_CSR_BYTES}"
        )
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError as exc:
        # cryptography's message is its ASN.1 parser's internal error,
        # which a device author cannot act on.
        log.debug("CSR parse failed: %s", exc)
        raise InvalidCsr("cannot read CSR: not a DER PKCS#10 request") from exc

    try:
        signature_valid = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
        raise InvalidCsr(f"cannot verify CSR signature: {exc}") from exc
    if not signature_valid:
        raise InvalidCsr(
            "cannot accept CSR: its signature does not verify with its own key",
            reason=Reason.BAD_CSR_SIGNATURE,
        )

    check_csr_subject(csr.subject, device)
    try:
        rules.check_key(csr, "CSR")
        rules.check_signature_algorithm(csr, "CSR")
    except rules.PolicyViolation as exc:
        raise CsrPolicyViolation(
            f"cannot accept CSR: {exc.detail}", reason=exc.reason
        ) from exc
    return csr


def check_csr_subject(subject: x509.Name, device: DeviceIdentity) -> None:
    """Raise unless the subject's ``O`` and ``CN``, where present, name this device.

    Values are compared exactly, as certificate subjects are, so a value
    that equals the connection's also meets the ID grammar.
    """
    organizations = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    common_names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    for label, attributes, expected in (
        ("O", organizations, device.project_id),
        ("CN", common_names, device.certificate_id),
    ):
        if len(attributes) > 1:
            raise InvalidCsr(
                f"cannot accept CSR: its subject has {len(attributes)} {label} "
                "attributes, expected at most one",
                reason=Reason.BAD_SUBJECT,
            )
        if attributes:
            value = attributes[0].value
            text = value if isinstance(value, str) else repr(value)
            _require_equal(label, text, expected, device)


def _require_equal(
    label: str, value: str, expected: str, device: DeviceIdentity
) -> None:
    if value == expected:
        return
    # The device requests an identity that its connection does not have.
    reason = (
        Reason.CSR_WRONG_PROJECT if label == "O" else Reason.CSR_WRONG_CERTIFICATE_ID
    )
    what = "project" if label == "O" else "certificate ID"
    raise DeviceRejected(
        f"cannot accept CSR: its subject {label} is {value!r} but the "
        f"connection's {what} is {expected!r}",
        reason=reason,
        project_id=device.project_id,
        certificate_id=device.certificate_id,
    )
