"""The device's OpenSSL context: its credentials, cipher suites and server checks.

The server is verified against the given CA file, then its certificate
must carry the host name or IP address the device dialled in its
subjectAltName. The subject CN is never read, as browsers no longer do
(``fleetgate serve`` puts its names in subjectAltName).

The CCM_8 suite that CoAP mandates needs OpenSSL's security level 0,
which would also admit weak server keys and signatures, so the
verification callback refuses those itself, as level 2 would.

OpenSSL's callbacks report into the :class:`HandshakeReport` that each
connection carries as its app data: the first alert the server sent and
the first reason its certificate was rejected. They must not raise,
because cffi would only print the error and carry on.

A device with a pre-shared key instead of a certificate uses
:func:`build_psk_context`, which offers only the PSK suites: the server
then sends no certificate and requests none, and the key authenticates
both sides.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import weakref
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from OpenSSL import SSL, crypto

from fleetgate.client.errors import CredentialsError

# CCM_8 first because CoAP mandates it (RFC 7252 9.1.3.3), then AEAD
# suites for servers with ECDSA or RSA keys. CCM_8 needs level 0.
DEFAULT_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-CCM8",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "@SECLEVEL=0",
    ]
)
# The PSK suites of Golioth's firmware SDK, CCM_8 first as for
# certificates. CCM_8 needs level 0.
DEFAULT_PSK_CIPHERS = ":".join(
    [
        "PSK-AES128-CCM8",
        "PSK-AES128-GCM-SHA256",
        "PSK-AES128-CCM",
        "PSK-AES128-CBC-SHA256",
        "@SECLEVEL=0",
    ]
)
# pyOpenSSL names no DTLS version constants; this is DTLS1_2_VERSION.
DTLS1_2_VERSION = 0xFEFD
# RFC 4279, section 5.3: identities up to 128 bytes and keys up to 64
# bytes must be supported.
MAX_PSK_IDENTITY_BYTES = 128
MAX_PSK_BYTES = 64

# Keeps each context's cffi PSK callback alive as long as the context.
_PSK_CALLBACKS: weakref.WeakKeyDictionary[SSL.Context, Any] = (
    weakref.WeakKeyDictionary()
)

# Weakest server keys accepted, in bits: OpenSSL's security level 2.
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
_WEAK_HASHES = (hashes.MD5, hashes.SHA1)

PrivateKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

# TLS alert descriptions from the IANA registry (RFC 5246 7.2, RFC 6066,
# RFC 7301, RFC 7507, RFC 8446).
ALERT_NAMES: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}


@dataclasses.dataclass(frozen=True)
class DeviceCredentials:
    """A device's certificate, private key and chain files, and the server CA.

    ``certificate`` may hold intermediates after the leaf; ``chain``
    names more files of intermediates to send. All files are PEM or DER.
    """

    certificate: Path
    private_key: Path
    server_ca: Path
    chain: tuple[Path, ...] = ()


@dataclasses.dataclass(frozen=True)
class PskCredentials:
    """A device's PSK identity (``<psk-id>@<project-id>``) and key bytes."""

    identity: str
    key: bytes = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        size = len(self.identity.encode("utf-8"))
        if not 0 < size <= MAX_PSK_IDENTITY_BYTES:
            raise CredentialsError(
                f"cannot use PSK identity of {size} bytes: it must have 1 to "
                f"{MAX_PSK_IDENTITY_BYTES}"
            )
        if not 0 < len(self.key) <= MAX_PSK_BYTES:
            raise CredentialsError(
                f"cannot use a pre-shared key of {len(self.key)} bytes: it must "
                f"have 1 to {MAX_PSK_BYTES}"
            )


@dataclasses.dataclass
class HandshakeReport:
    """Alerts and verification failures recorded by OpenSSL's callbacks."""

    server_hostname: str
    received_alert: int | None = None
    rejection: tuple[str, int] | None = None  # (reason, certificate depth)

    @property
    def alert(self) -> str | None:
        """Name of the first alert the server sent, if any."""
        if self.received_alert is None:
            return None
        return alert_name(self.received_alert)


def build_client_context(
    credentials: DeviceCredentials, *, ciphers: str = DEFAULT_CIPHERS
) -> SSL.Context:
    """Create a DTLS 1.2 client context that presents and verifies certificates.

    One context serves any number of connections, each of which must
    carry a :class:`HandshakeReport` as its app data. Raises
    CredentialsError when a file cannot be used and ValueError for a
    cipher list OpenSSL does not take.
    """
    sent = load_certificates(credentials.certificate)
    for path in credentials.chain:
        sent += load_certificates(path)
    key = load_private_key(credentials.private_key)

    context = _new_context(ciphers)
    try:
        context.use_certificate(sent[0])
        # Extra certificates follow the leaf in the Certificate message
        # (RFC 5246 7.4.2), so the server can build the path to its anchor.
        for certificate in sent[1:]:
            context.add_extra_chain_cert(certificate)
        context.use_privatekey(key)
        context.check_privatekey()
    except SSL.Error as exc:
        raise CredentialsError(
            f"cannot use device key {credentials.private_key}: "
            f"it does not match certificate {credentials.certificate}"
        ) from exc
    try:
        context.load_verify_locations(str(credentials.server_ca))
    except SSL.Error as exc:
        raise CredentialsError(
            f"cannot load server CA {credentials.server_ca}: {openssl_reasons(exc)}"
        ) from exc
    context.set_verify(SSL.VERIFY_PEER, _verify_server)
    context.set_info_callback(_record_alert)
    return context


def build_psk_context(
    credentials: PskCredentials, *, ciphers: str = DEFAULT_PSK_CIPHERS
) -> SSL.Context:
    """Create a DTLS 1.2 client context that authenticates with a pre-shared key.

    Connections need a :class:`HandshakeReport` as app data, as with
    :func:`build_client_context`. Raises ValueError for a cipher list
    OpenSSL does not take.
    """
    context = _new_context(ciphers)
    identity = credentials.identity.encode("utf-8")
    key = credentials.key

    def client_psk(
        ssl: Any,
        hint: Any,
        identity_out: Any,
        max_identity_len: int,
        psk_out: Any,
        max_psk_len: int,
    ) -> int:
        # OpenSSL wants the identity NUL-terminated within its buffer.
        if len(identity) + 1 > max_identity_len or len(key) > max_psk_len:
            return 0
        Binding.ffi.memmove(identity_out, identity + b"\0", len(identity) + 1)
        Binding.ffi.memmove(psk_out, key, len(key))
        return len(key)

    callback = Binding.ffi.callback(
        "unsigned int (*)(SSL *, const char *, char *, unsigned int, "
        "unsigned char *, unsigned int)",
        client_psk,
    )
    # A collected callback would leave OpenSSL calling freed memory.
    _PSK_CALLBACKS[context] = callback
    Binding.lib.SSL_CTX_set_psk_client_callback(context._context, callback)
    context.set_info_callback(_record_alert)
    return context


def _new_context(ciphers: str) -> SSL.Context:
    context = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    context.set_min_proto_version(DTLS1_2_VERSION)
    for option in (SSL.OP_NO_QUERY_MTU, SSL.OP_NO_TICKET, SSL.OP_NO_RENEGOTIATION):
        if option is not None:  # None where the OpenSSL build lacks it
            context.set_options(option)
    try:
        context.set_cipher_list(ciphers.encode("ascii"))
    except SSL.Error as exc:
        raise ValueError(
            f"cannot use cipher list {ciphers!r}: {openssl_reasons(exc)}"
        ) from exc
    return context


def alert_name(description: int) -> str:
    """Return the registered name of a TLS alert description."""
    return ALERT_NAMES.get(description, f"alert_{description}")


def openssl_reasons(exc: SSL.Error) -> str:
    """Render the reason strings of OpenSSL's error queue held by ``exc``."""
    details = exc.args[0] if exc.args else None
    if isinstance(details, list) and details:
        return "; ".join(str(entry[-1]) for entry in details if entry)
    return str(exc) or type(exc).__name__


def is_ip_address(text: str) -> bool:
    """Tell whether ``text`` is an IPv4 or IPv6 address literal."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Read the certificates of a PEM file, or the one of a DER file."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise CredentialsError(
            f"cannot read certificate {path}: {exc.strerror}"
        ) from exc
    try:
        if b"-----BEGIN" in content:
            return x509.load_pem_x509_certificates(content)
        return [x509.load_der_x509_certificate(content)]
    except ValueError as exc:
        raise CredentialsError(
            f"cannot load certificate {path}: not a PEM or DER certificate"
        ) from exc


def load_private_key(path: Path) -> PrivateKey:
    """Read an unencrypted PEM or DER private key of a supported type."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise CredentialsError(
            f"cannot read device key {path}: {exc.strerror}"
        ) from exc
    try:
        if b"-----BEGIN" in content:
            key = serialization.load_pem_private_key(content, password=None)
        else:
            key = serialization.load_der_private_key(content, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialsError(
            f"cannot load device key {path}: not an unencrypted PEM or DER key"
        ) from exc
    if not isinstance(key, PrivateKey):
        raise CredentialsError(
            f"cannot use device key {path}: {type(key).__name__} is not supported"
        )
    return key


def _record_alert(connection: SSL.Connection, where: int, value: int) -> None:
    if where & SSL.SSL_CB_READ_ALERT != SSL.SSL_CB_READ_ALERT:
        return
    report = connection.get_app_data()
    if isinstance(report, HandshakeReport) and report.received_alert is None:
        # The alert level is in the high byte, its description in the low.
        report.received_alert = value & 0xFF


def _verify_server(
    connection: SSL.Connection,
    certificate: crypto.X509,
    error_number: int,
    depth: int,
    ok: int,
) -> bool:
    report = connection.get_app_data()
    if not isinstance(report, HandshakeReport):
        return False
    reason: str | None
    if not ok:
        reason = _verify_error_string(error_number)
    else:
        parsed = certificate.to_cryptography()
        reason = _weakness(parsed)
        if reason is None and depth == 0:
            reason = _name_mismatch(parsed, report.server_hostname)
    if reason is None:
        return True
    if report.rejection is None:
        report.rejection = (reason, depth)
    return False


def _verify_error_string(error_number: int) -> str:
    text = Binding.lib.X509_verify_cert_error_string(error_number)
    return str(Binding.ffi.string(text).decode("utf-8", "replace"))


def _weakness(certificate: x509.Certificate) -> str | None:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return f"its RSA key of {key.key_size} bits is too weak"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < MIN_EC_BITS:
            return f"its EC key on {key.curve.name} is too weak"
    elif not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return f"its {type(key).__name__} is not accepted"
    if certificate.issuer != certificate.subject:
        # A self-signed anchor's own signature protects nothing.
        algorithm = certificate.signature_hash_algorithm
        if isinstance(algorithm, _WEAK_HASHES):
            return f"its signature with {algorithm.name} is too weak"
    return None


def _name_mismatch(certificate: x509.Certificate, hostname: str) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        return f"it has no subjectAltName, so it cannot name {hostname}"
    if is_ip_address(hostname):
        address = ipaddress.ip_address(hostname)
        if address in names.get_values_for_type(x509.IPAddress):
            return None
    else:
        for pattern in names.get_values_for_type(x509.DNSName):
            if _dns_name_matches(pattern, hostname):
                return None
    return f"it does not name {hostname}"


def _dns_name_matches(pattern: str, hostname: str) -> bool:
    pattern_labels = pattern.rstrip(".").lower().split(".")
    host_labels = hostname.rstrip(".").lower().split(".")
    if len(pattern_labels) != len(host_labels):
        return False
    # RFC 6125 6.4.3: "*" as the whole leftmost label matches exactly one
    # label. Partial-label wildcards and "*.tld" are not honoured.
    if pattern_labels[0] == "*" and len(pattern_labels) > 2:
        return pattern_labels[1:] == host_labels[1:]
    return pattern_labels == host_labels
