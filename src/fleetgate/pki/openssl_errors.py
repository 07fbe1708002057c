"""Reason codes for OpenSSL's certificate verification errors.

OpenSSL reports a failed path as an ``X509_V_ERR_*`` code, the depth of
the certificate at fault (0 is the leaf) and a short English message.
The codes are stable across OpenSSL releases (see ``x509_vfy.h``), so
they are listed here by number. A code not listed maps to
``chain_invalid`` with OpenSSL's own message.
"""

from __future__ import annotations

from cryptography import x509

from fleetgate.errors import Reason

# Codes for which OpenSSL could not find the issuer among the anchors.
_NO_ISSUER = frozenset(
    {
        2,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
        20,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        21,  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
        29,  # X509_V_ERR_SUBJECT_ISSUER_MISMATCH
        30,  # X509_V_ERR_AKID_SKID_MISMATCH
        31,  # X509_V_ERR_AKID_ISSUER_SERIAL_MISMATCH
    }
)
# Codes for a path that ends in a self-signed certificate not registered.
_UNTRUSTED_ROOT = frozenset(
    {
        18,  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        19,  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    }
)

_SIGNATURE_FAILURE = 7  # X509_V_ERR_CERT_SIGNATURE_FAILURE

_REASONS: dict[int, Reason] = {
    4: Reason.BAD_SIGNATURE,  # X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE
    6: Reason.BAD_SIGNATURE,  # X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY
    7: Reason.BAD_SIGNATURE,  # X509_V_ERR_CERT_SIGNATURE_FAILURE
    22: Reason.CHAIN_TOO_LONG,  # X509_V_ERR_CERT_CHAIN_TOO_LONG
    25: Reason.PATH_LENGTH_EXCEEDED,  # X509_V_ERR_PATH_LENGTH_EXCEEDED
    32: Reason.BAD_KEY_USAGE,  # X509_V_ERR_KEYUSAGE_NO_CERTSIGN
    34: Reason.UNHANDLED_CRITICAL_EXTENSION,  # ..._UNHANDLED_CRITICAL_EXTENSION
    41: Reason.MALFORMED_CERTIFICATE,  # X509_V_ERR_INVALID_EXTENSION
    47: Reason.NAME_CONSTRAINTS,  # X509_V_ERR_PERMITTED_VIOLATION
    48: Reason.NAME_CONSTRAINTS,  # X509_V_ERR_EXCLUDED_VIOLATION
    49: Reason.NAME_CONSTRAINTS,  # X509_V_ERR_SUBTREE_MINMAX
    51: Reason.NAME_CONSTRAINTS,  # X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE
    52: Reason.NAME_CONSTRAINTS,  # X509_V_ERR_UNSUPPORTED_CONSTRAINT_SYNTAX
    53: Reason.NAME_CONSTRAINTS,  # X509_V_ERR_UNSUPPORTED_NAME_SYNTAX
    66: Reason.WEAK_KEY,  # X509_V_ERR_EE_KEY_TOO_SMALL
    67: Reason.WEAK_KEY,  # X509_V_ERR_CA_KEY_TOO_SMALL
    68: Reason.WEAK_SIGNATURE,  # X509_V_ERR_CA_MD_TOO_WEAK
    79: Reason.NOT_A_CA,  # X509_V_ERR_INVALID_CA
    94: Reason.WEAK_KEY,  # X509_V_ERR_EC_KEY_EXPLICIT_PARAMS
}


def describe_openssl_error(
    code: int, depth: int, message: str, cert: x509.Certificate
) -> tuple[Reason, str]:
    """Return the reason code and a message for one OpenSSL verify error.

    ``cert`` is the certificate at ``depth``, the one OpenSSL blames.
    """
    subject = repr(cert.subject.rfc4514_string())
    if code in _NO_ISSUER:
        return (
            Reason.UNKNOWN_CA,
            f"issuer {cert.issuer.rfc4514_string()!r} of {subject} is not a "
            "registered CA certificate of the project",
        )
    if code in _UNTRUSTED_ROOT:
        return (
            Reason.UNKNOWN_CA,
            f"the chain ends at self-signed {subject}, which is not a "
            "registered CA certificate of the project",
        )
    if code == _SIGNATURE_FAILURE:
        return (
            Reason.BAD_SIGNATURE,
            f"the signature of {subject} does not verify with the public key "
            f"of the CA certificate named {cert.issuer.rfc4514_string()!r}",
        )
    reason = _REASONS.get(code, Reason.CHAIN_INVALID)
    return reason, f"OpenSSL error {code} at depth {depth} ({subject}): {message}"
