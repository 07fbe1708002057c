"""The server's OpenSSL context: credentials, cipher suites, client verification.

Client certificates are judged by Fleetgate's own verifier, never by a
store on the context: the trust anchors depend on the project named in
the leaf, which OpenSSL cannot know. The context therefore carries an
empty store, and a verification callback hands the chain OpenSSL built
from the peer's Certificate message to the verifier once per handshake.
Refusing inside the callback makes OpenSSL end the handshake with an
alert that names the failure (unknown_ca, certificate_expired,
bad_certificate), where a refusal after the handshake could only send
close_notify.

The callback is installed through cryptography's OpenSSL binding because
pyOpenSSL's own verify callback does not expose the built chain. It
must never raise: an exception inside an OpenSSL callback cannot
propagate, so every error refuses the peer and is logged. When the
database is unreachable the peer gets an internal_error alert.

A client that negotiates a PSK suite presents no certificate: OpenSSL
calls the PSK callback with the identity from its ClientKeyExchange
(RFC 4279, section 2), and the callback answers from memory, because it
runs inside the handshake on the event loop. pyOpenSSL 26 has no PSK
API, so this callback is installed through cryptography's binding too.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import SSL, crypto

from fleetgate.errors import DeviceRejected, Reason, StoreUnavailable

log = logging.getLogger(__name__)

_ffi = Binding.ffi
_lib = Binding.lib

# CCM_8 suites are mandatory for CoAP (RFC 7252 section 9.1.3.3). The
# bundled OpenSSL rates them at 64 bits, so they need an explicit list and
# security level 0. Fleetgate's own key policy still applies to every
# certificate, so the lowered level admits no weak keys.
CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-CCM8",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-CCM",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
        # PSK suites after every certificate suite, so that a client offering
        # both authenticates with its certificate. These are the suites that
        # Golioth's firmware SDK offers for PSK (its GOLIOTH_CIPHERSUITES
        # Kconfig defaults): CCM_8 mandated by RFC 7252, GCM, CCM, and CBC
        # for mbedTLS builds that have neither AEAD mode.
        "PSK-AES128-CCM8",
        "PSK-AES128-GCM-SHA256",
        "PSK-AES128-CCM",
        "PSK-AES128-CBC-SHA256",
        "@SECLEVEL=0",
    ]
)

# Keeps each context's cffi verify callback alive as long as the context.
_VERIFY_CALLBACKS: weakref.WeakKeyDictionary[SSL.Context, Any] = (
    weakref.WeakKeyDictionary()
)
# The same for the PSK callbacks.
_PSK_CALLBACKS: weakref.WeakKeyDictionary[SSL.Context, Any] = (
    weakref.WeakKeyDictionary()
)
# Each context's check of a PSK handshake's Finished.
_FINISHED_CHECKS: weakref.WeakKeyDictionary[SSL.Context, FinishedCheck] = (
    weakref.WeakKeyDictionary()
)

# pyOpenSSL names no DTLS version constants; this is OpenSSL's DTLS1_2_VERSION.
DTLS1_2_VERSION = 0xFEFD

# The X.509 error code set on a refusal picks the TLS alert OpenSSL sends.
_ALERT_ERRORS: dict[Reason, int] = {
    Reason.UNKNOWN_CA: _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    Reason.UNKNOWN_PROJECT: _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    Reason.EXPIRED: _lib.X509_V_ERR_CERT_HAS_EXPIRED,
    Reason.CA_EXPIRED: _lib.X509_V_ERR_CERT_HAS_EXPIRED,
    Reason.NOT_YET_VALID: _lib.X509_V_ERR_CERT_NOT_YET_VALID,
    Reason.REVOKED: _lib.X509_V_ERR_CERT_REVOKED,
}

# The ex_data index of a store context's SSL. OpenSSL fixes it once per
# process, and the callback reads it up to three times per handshake.
_SSL_EX_DATA_INDEX = _lib.SSL_get_ex_data_X509_STORE_CTX_idx()

# OpenSSL's X509_V_ERR_UNSPECIFIED, which the binding does not name. It
# makes OpenSSL send an internal_error alert, not a certificate alert.
X509_V_ERR_UNSPECIFIED = 1

# Decides on a peer chain of OpenSSL's parsed certificates (leaf first)
# and returns the identity to attach to the session, or raises
# DeviceRejected.
Authenticator = Callable[[object, Sequence[crypto.X509]], object]
# Decides on a PSK identity as the client sent it and returns the identity
# to attach to the session with its key, or raises DeviceRejected.
PskAuthenticator = Callable[[object, bytes], tuple[object, bytes]]
# Called with a session and its PSK identity after the client's Finished
# arrived; the handshake has failed when the session is still handshaking.
FinishedCheck = Callable[[object, object], None]


@dataclasses.dataclass(frozen=True)
class ServerCredentials:
    """The server's certificate chain (PEM, leaf first) and private key."""

    certificate_chain: Path
    private_key: Path


@dataclasses.dataclass
class _Verdict:
    identity: object | None
    error_code: int
    # Set for an identity the PSK callback accepted.
    psk: bool = False


def build_server_context(
    credentials: ServerCredentials,
    authenticate: Authenticator,
    *,
    verify_cookie: Callable[[SSL.Connection, bytes], bool],
    generate_cookie: Callable[[SSL.Connection], bytes],
    authenticate_psk: PskAuthenticator | None = None,
    check_psk_finished: FinishedCheck | None = None,
) -> SSL.Context:
    """Create a DTLS 1.2 server context for client certificates and PSKs.

    A client that negotiates a certificate suite must present a
    certificate. OpenSSL offers the PSK suites only when
    ``authenticate_psk`` is given, and sends no CertificateRequest for them.

    DTLS drops a record that fails to decrypt (RFC 6347 4.1.2.7), so a
    client with the wrong key never gets an alert: its Finished simply
    vanishes. ``check_psk_finished`` runs through
    :func:`check_finished_received` once a datagram holding the Finished
    of a PSK handshake was handled, so the gateway can tell a refused
    key from a lost one.
    """
    context = SSL.Context(SSL.DTLS_SERVER_METHOD)
    context.set_min_proto_version(DTLS1_2_VERSION)
    for option in (
        SSL.OP_NO_QUERY_MTU,
        SSL.OP_COOKIE_EXCHANGE,
        SSL.OP_NO_RENEGOTIATION,
        SSL.OP_NO_TICKET,
        SSL.OP_CIPHER_SERVER_PREFERENCE,
    ):
        if option is not None:  # None where the OpenSSL build lacks it
            context.set_options(option)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_cipher_list(CIPHERS.encode())
    context.use_certificate_chain_file(str(credentials.certificate_chain))
    context.use_privatekey_file(str(credentials.private_key))
    context.check_privatekey()
    context.set_cookie_generate_callback(generate_cookie)
    context.set_cookie_verify_callback(verify_cookie)
    _install_verify_callback(context, authenticate)
    if authenticate_psk is not None:
        _install_psk_callback(context, authenticate_psk)
        if check_psk_finished is not None:
            _FINISHED_CHECKS[context] = check_psk_finished
    return context


def session_identity(connection: SSL.Connection) -> object | None:
    """Return the identity the verifier attached to ``connection``, if any."""
    verdict = getattr(connection.get_app_data(), "tls_verdict", None)
    if isinstance(verdict, _Verdict) and verdict.error_code == 0:
        return verdict.identity
    return None


def _install_verify_callback(context: SSL.Context, authenticate: Authenticator) -> None:
    def verify(preverify_ok: int, store_ctx: Any) -> int:
        try:
            return _verify(store_ctx, authenticate)
        except Exception:
            log.exception("certificate verification callback failed")
            return 0

    callback = _ffi.callback("int (*)(int, X509_STORE_CTX *)", verify)
    # A collected callback would leave OpenSSL calling freed memory.
    _VERIFY_CALLBACKS[context] = callback
    mode = _lib.SSL_VERIFY_PEER | _lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT
    _lib.SSL_CTX_set_verify(context._context, mode, callback)
    # The policy bounds the chain; this only stops OpenSSL building absurd ones.
    _lib.SSL_CTX_set_verify_depth(context._context, 16)


def _install_psk_callback(
    context: SSL.Context, authenticate_psk: PskAuthenticator
) -> None:
    def find_psk(ssl_ptr: Any, identity: Any, psk: Any, max_psk_len: int) -> int:
        try:
            return _find_psk(ssl_ptr, identity, psk, max_psk_len, authenticate_psk)
        except Exception:
            log.exception("PSK callback failed")
            return 0

    callback = _ffi.callback(
        "unsigned int (*)(SSL *, const char *, unsigned char *, unsigned int)",
        find_psk,
    )
    # A collected callback would leave OpenSSL calling freed memory.
    _PSK_CALLBACKS[context] = callback
    _lib.SSL_CTX_set_psk_server_callback(context._context, callback)


def check_finished_received(connection: SSL.Connection) -> None:
    """Run the context's Finished check on a PSK handshake.

    The caller passes a connection that has just handled a datagram
    holding an encrypted handshake record, the client's Finished, and
    is still handshaking. A certificate handshake returns at once.
    """
    session = connection.get_app_data()
    verdict = getattr(session, "tls_verdict", None)
    if not (isinstance(verdict, _Verdict) and verdict.psk and verdict.error_code == 0):
        return
    check = _FINISHED_CHECKS.get(connection.get_context())
    if check is not None:
        check(session, verdict.identity)


def _find_psk(
    ssl_ptr: Any,
    identity: Any,
    psk: Any,
    max_psk_len: int,
    authenticate_psk: PskAuthenticator,
) -> int:
    session = SSL.Connection._reverse_mapping[ssl_ptr].get_app_data()
    claimed = b"" if identity == _ffi.NULL else _ffi.string(identity)
    try:
        peer, key = authenticate_psk(session, claimed)
    except DeviceRejected:
        # Returning 0 makes OpenSSL send unknown_psk_identity (RFC 4279 2).
        session.tls_verdict = _Verdict(None, _lib.X509_V_ERR_CERT_REJECTED)
        return 0
    if len(key) > max_psk_len:
        log.error("cannot use PSK of %d bytes: OpenSSL takes %d", len(key), max_psk_len)
        session.tls_verdict = _Verdict(None, _lib.X509_V_ERR_CERT_REJECTED)
        return 0
    session.tls_verdict = _Verdict(peer, 0, psk=True)
    _ffi.memmove(psk, key, len(key))
    return len(key)


def pending_identity(session: object) -> object | None:
    """Return the identity accepted during a handshake that has not finished."""
    verdict = getattr(session, "tls_verdict", None)
    if isinstance(verdict, _Verdict) and verdict.error_code == 0:
        return verdict.identity
    return None


def _verify(store_ctx: Any, authenticate: Authenticator) -> int:
    ssl_ptr = _lib.X509_STORE_CTX_get_ex_data(store_ctx, _SSL_EX_DATA_INDEX)
    session = SSL.Connection._reverse_mapping[ssl_ptr].get_app_data()

    # OpenSSL calls back once per certificate and once per error; the
    # chain is complete at the first call, so decide once and reuse it.
    verdict = getattr(session, "tls_verdict", None)
    if verdict is None:
        verdict = _decide(session, _built_chain(store_ctx), authenticate)
        session.tls_verdict = verdict
    if verdict.error_code == 0:
        return 1
    _lib.X509_STORE_CTX_set_error(store_ctx, verdict.error_code)
    return 0


def _decide(
    session: object, chain: list[crypto.X509], authenticate: Authenticator
) -> _Verdict:
    if not chain:
        return _Verdict(None, _lib.X509_V_ERR_CERT_REJECTED)
    try:
        identity = authenticate(session, chain)
    except DeviceRejected as exc:
        code = _ALERT_ERRORS.get(exc.reason, _lib.X509_V_ERR_CERT_REJECTED)
        return _Verdict(None, code)
    except StoreUnavailable as exc:
        # The database's outage monitor logs the outage itself.
        log.debug("cannot verify chain reason=%s error=%s", exc.reason, exc.message)
        return _Verdict(None, X509_V_ERR_UNSPECIFIED)
    return _Verdict(identity, 0)


def _built_chain(store_ctx: Any) -> list[crypto.X509]:
    stack = _lib.X509_STORE_CTX_get1_chain(store_ctx)
    if stack == _ffi.NULL:
        return []
    try:
        # get1_chain took a reference on each certificate; the wrapper
        # releases it when collected.
        return [
            crypto.X509._from_raw_x509_ptr(_lib.sk_X509_value(stack, index))
            for index in range(_lib.sk_X509_num(stack))
        ]
    finally:
        _lib.sk_X509_free(stack)
