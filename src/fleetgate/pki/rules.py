"""Per-certificate rules of the verification policy, on top of OpenSSL.

OpenSSL builds the path and checks signatures, but it accepts key types
and signature algorithms that Fleetgate does not: with the OpenSSL 4.0
bundled in cryptography 50, DSA and P-192 keys and SHA-1 and MD5
signatures all pass an ``X509_STORE`` check, as does serial number zero.
Outside strict mode it also accepts a trust anchor without
basicConstraints, such as a v1 root. These rules close those gaps.

Each failed rule raises :class:`PolicyViolation` with a stable reason
code. The caller adds the context (project, certificate ID, fingerprint)
and picks the error class.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from fleetgate.errors import Reason

MIN_RSA_BITS = 2048
ALLOWED_CURVES = frozenset({"secp256r1", "secp384r1"})
ALLOWED_KEYS = "ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits"

# An allow-list: MD5 and SHA-1 have practical collision attacks, and any
# algorithm not listed here is rejected as well.
_ALLOWED_SIGNATURES = frozenset(
    {
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
        SignatureAlgorithmOID.RSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA384,
        SignatureAlgorithmOID.RSA_WITH_SHA512,
        SignatureAlgorithmOID.ED25519,
    }
)
_ALLOWED_PSS_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)

# The key and signature rules apply alike to certificates and to the
# certificate signing requests that devices send for rotation.
Signed = x509.Certificate | x509.CertificateSigningRequest


class Role:
    """A certificate's description in messages, rendered only on failure.

    Formatting a subject takes a few microseconds, which every accepted
    handshake would otherwise spend on each CA certificate.
    """

    def __init__(
        self, label: str, cert: x509.Certificate | None = None, note: str = ""
    ) -> None:
        self._label = label
        self._cert = cert
        self._note = note

    def __str__(self) -> str:
        if self._cert is None:
            return self._label
        subject = self._cert.subject.rfc4514_string()
        return f"{self._label} {subject!r}{self._note}"


class PolicyViolation(Exception):
    """One broken rule: a reason code and a detail naming the value."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def describe_key(key: object) -> str:
    """Return a short name of a public key type and size for messages."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}-bit"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}-bit"
    return type(key).__name__.removeprefix("_").removesuffix("PublicKey")


def check_key(cert: Signed, role: str | Role) -> None:
    """Raise WEAK_KEY unless the public key is on the allow-list."""
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise PolicyViolation(
            Reason.WEAK_KEY, f"{role} has an unsupported public key ({exc})"
        ) from exc

    if isinstance(key, ec.EllipticCurvePublicKey):
        allowed = key.curve.name in ALLOWED_CURVES
    elif isinstance(key, rsa.RSAPublicKey):
        allowed = key.key_size >= MIN_RSA_BITS
    else:
        allowed = isinstance(key, ed25519.Ed25519PublicKey)
    if not allowed:
        raise PolicyViolation(
            Reason.WEAK_KEY,
            f"{role} has key type {describe_key(key)}; allowed: {ALLOWED_KEYS}",
        )


def check_signature_algorithm(cert: Signed, role: str | Role) -> None:
    """Raise WEAK_SIGNATURE unless the signature algorithm is allowed."""
    oid = cert.signature_algorithm_oid
    if oid in _ALLOWED_SIGNATURES:
        return
    if oid == SignatureAlgorithmOID.RSASSA_PSS:
        # RSASSA-PSS names its hash in the parameters (RFC 4055, section 3.1).
        try:
            hash_algorithm = cert.signature_hash_algorithm
        except UnsupportedAlgorithm:
            hash_algorithm = None
        if isinstance(hash_algorithm, _ALLOWED_PSS_HASHES):
            return
    name = getattr(oid, "_name", None) or oid.dotted_string
    raise PolicyViolation(
        Reason.WEAK_SIGNATURE,
        f"{role} is signed with {name}; allowed: ECDSA, RSA or RSASSA-PSS "
        "with SHA-256/384/512, or Ed25519",
    )


def check_serial(cert: x509.Certificate, role: str | Role) -> None:
    """Raise BAD_SERIAL unless the serial number is positive (RFC 5280, 4.1.2.2)."""
    if cert.serial_number <= 0:
        raise PolicyViolation(
            Reason.BAD_SERIAL,
            f"{role} has serial number {cert.serial_number}; it must be positive",
        )


def read_extensions(cert: x509.Certificate, role: str | Role) -> x509.Extensions:
    """Return the parsed extensions, raising MALFORMED_CERTIFICATE if invalid."""
    try:
        return cert.extensions
    except (ValueError, x509.DuplicateExtension) as exc:
        raise PolicyViolation(
            Reason.MALFORMED_CERTIFICATE, f"{role} has invalid extensions ({exc})"
        ) from exc


def check_ca_shape(cert: x509.Certificate, role: str | Role) -> None:
    """Raise unless ``cert`` is a v3 CA certificate that may sign certificates."""
    # basicConstraints exists only in v3 (RFC 5280, section 4.1.2.1).
    if cert.version != x509.Version.v3:
        raise PolicyViolation(
            Reason.V1_NOT_ALLOWED,
            f"{role} is X.509 {cert.version.name}; CA certificates must be v3",
        )
    extensions = read_extensions(cert, role)
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        raise PolicyViolation(
            Reason.NOT_A_CA, f"{role} has no basicConstraints extension"
        ) from None
    # RFC 5280, section 4.2.1.9: only cA TRUE lets a key sign certificates.
    if not constraints.value.ca:
        raise PolicyViolation(Reason.NOT_A_CA, f"{role} has basicConstraints CA:FALSE")

    # RFC 5280, section 4.2.1.3: a present keyUsage must assert keyCertSign.
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        return
    if not usage.value.key_cert_sign:
        raise PolicyViolation(
            Reason.BAD_KEY_USAGE, f"{role} has a keyUsage without keyCertSign"
        )


def check_leaf_shape(cert: x509.Certificate, *, require_v3: bool) -> None:
    """Raise unless the device certificate is an end-entity certificate."""
    if cert.version != x509.Version.v3:
        if require_v3:
            raise PolicyViolation(
                Reason.V1_NOT_ALLOWED,
                f"device certificate is X.509 {cert.version.name}; "
                "the project requires v3",
            )
        return

    extensions = read_extensions(cert, "device certificate")
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        pass
    else:
        if constraints.value.ca:
            raise PolicyViolation(
                Reason.LEAF_IS_CA, "device certificate has basicConstraints CA:TRUE"
            )
    # RFC 5280, section 4.2.1.3: keyCertSign is only for CA certificates.
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        return
    if usage.value.key_cert_sign:
        raise PolicyViolation(
            Reason.LEAF_IS_CA, "device certificate has keyUsage keyCertSign"
        )


def check_validity(
    cert: x509.Certificate,
    now: dt.datetime,
    skew: dt.timedelta,
    *,
    role: str | Role,
    expired: Reason,
    not_yet_valid: Reason,
) -> None:
    """Raise unless ``now`` is inside the validity period, widened by ``skew``."""
    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    if now > not_after + skew:
        raise PolicyViolation(
            expired,
            f"{role} expired at {not_after.isoformat()} "
            f"(now {now.isoformat(timespec='seconds')}, allowed clock skew {skew})",
        )
    if now < not_before - skew:
        raise PolicyViolation(
            not_yet_valid,
            f"{role} is not valid before {not_before.isoformat()} "
            f"(now {now.isoformat(timespec='seconds')}, allowed clock skew {skew})",
        )


def is_self_signed(cert: x509.Certificate) -> bool:
    """Return whether ``cert`` names itself as issuer and its key verifies it."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    # InvalidSignature: a self-issued certificate signed by another key,
    # as in a CA key rollover (RFC 5280, section 6.1).
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def check_critical_extensions(cert: x509.Certificate, role: str | Role) -> None:
    """Raise unless every critical extension is one that is understood.

    RFC 5280, section 4.2: a certificate with a critical extension that
    the verifier does not recognize must be rejected.
    """
    for extension in read_extensions(cert, role):
        if extension.critical and isinstance(
            extension.value, x509.UnrecognizedExtension
        ):
            raise PolicyViolation(
                Reason.UNHANDLED_CRITICAL_EXTENSION,
                f"{role} has an unrecognized critical extension "
                f"{extension.oid.dotted_string}",
            )
