"""Exceptions raised by Fleetgate, and the stable reason codes they carry.

Every error carries how it is rendered to each audience: an HTTP status for
the management API, a CoAP response code for a device request, and a
stable ``reason`` string for logs and metrics. The tree::

    FleetgateError
     +-- InvalidInput            400, CoAP 4.00   a value breaks a documented rule
     |    +-- PayloadTooLarge     413, CoAP 4.13   a body exceeds its size limit
     |    +-- InvalidCertificate                   a certificate cannot be used
     |    +-- InvalidCsr                           a CSR is malformed or unsigned
     |         +-- CsrPolicyViolation 422, CoAP 4.22   its key or algorithm is refused
     +-- NotFound                404, CoAP 4.04
     +-- Conflict                409, CoAP 4.09   a unique name or ID is taken
     +-- Unauthenticated         401              no valid API key was sent
     +-- Forbidden               403              the API key may not do this
     +-- DeviceRejected          403, CoAP 4.03   a device may not connect
     |    +-- ChainRejected                        its certificate chain failed
     +-- RateLimited             429, CoAP 4.29   too many requests; retry_after
     +-- NoIssuingProvider       501, CoAP 5.01   the project's provider cannot issue
     +-- ProviderFailed          502, CoAP 5.00   the PKI provider refused or broke
     +-- ProviderUnavailable     503, CoAP 5.03   the PKI provider is busy; retry_after
     +-- StoreUnavailable        503, CoAP 5.03   the database is down; retry_after
     |    +-- WriteQueueFull      503, CoAP 5.03   device writes are queued to the limit
     +-- StartupFailed                            a server cannot listen

Messages read "cannot <action>: <reason>" and name the offending value.
They never contain key material, API keys or whole certificates; a
certificate is named by its SHA-256 fingerprint.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Stable reason codes, used in logs, metrics and API error bodies."""

    # Input and lookups.
    INVALID_INPUT = "invalid_input"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    STORE_UNAVAILABLE = "store_unavailable"
    STORE_RECOVERED = "store_recovered"
    WRITE_QUEUE_FULL = "write_queue_full"
    INVALID_BASE64 = "invalid_base64"
    INVALID_REQUEST = "invalid_request"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INTERNAL_ERROR = "internal_error"

    # Management API keys.
    MISSING_API_KEY = "missing_api_key"
    INVALID_API_KEY = "invalid_api_key"
    REVOKED_API_KEY = "revoked_api_key"
    ADMIN_KEY_REQUIRED = "admin_key_required"
    INVALID_CSRF_TOKEN = "invalid_csrf_token"

    # Certificates and chains.
    MALFORMED_CERTIFICATE = "malformed_certificate"
    BAD_SUBJECT = "bad_subject"
    INVALID_CERTIFICATE_ID = "invalid_certificate_id"
    UNKNOWN_PROJECT = "unknown_project"
    UNKNOWN_CA = "unknown_ca"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    CA_EXPIRED = "ca_expired"
    CA_NOT_YET_VALID = "ca_not_yet_valid"
    WEAK_KEY = "weak_key"
    WEAK_SIGNATURE = "weak_signature"
    LEAF_IS_CA = "leaf_is_ca"
    NOT_A_CA = "not_a_ca"
    BAD_KEY_USAGE = "bad_key_usage"
    ROOT_NOT_SELF_SIGNED = "root_not_self_signed"
    INTERMEDIATE_SELF_SIGNED = "intermediate_self_signed"
    V1_NOT_ALLOWED = "v1_not_allowed"
    BAD_SERIAL = "bad_serial"
    CHAIN_TOO_LONG = "chain_too_long"
    PATH_LENGTH_EXCEEDED = "path_length_exceeded"
    NAME_CONSTRAINTS = "name_constraints"
    UNHANDLED_CRITICAL_EXTENSION = "unhandled_critical_extension"
    REVOKED = "revoked"
    MALFORMED_CRL = "malformed_crl"
    CRL_NOT_FROM_CA = "crl_not_from_ca"
    CRL_EXPIRED = "crl_expired"
    CHAIN_INVALID = "chain_invalid"
    CA_ALREADY_REGISTERED = "ca_already_registered"
    # A certificate explained in one project whose O names another.
    WRONG_PROJECT = "wrong_project"

    # Handshakes that fail before or besides chain verification.
    NO_CLIENT_CERTIFICATE = "no_client_certificate"
    HANDSHAKE_FAILED = "handshake_failed"

    # Pre-shared keys (DTLS PSK).
    WEAK_PSK = "weak_psk"
    INVALID_PSK_IDENTITY = "invalid_psk_identity"
    UNKNOWN_PSK_IDENTITY = "unknown_psk_identity"
    PSK_MISMATCH = "psk_mismatch"
    PSK_UNREADABLE = "psk_unreadable"

    # Devices.
    DEVICE_DISABLED = "device_disabled"
    # The project creates devices only for certificate IDs in a manifest.
    NOT_IN_MANIFEST = "not_in_manifest"

    # Certificate signing requests and their issuing.
    MALFORMED_CSR = "malformed_csr"
    BAD_CSR_SIGNATURE = "bad_csr_signature"
    CSR_WRONG_PROJECT = "csr_wrong_project"
    CSR_WRONG_CERTIFICATE_ID = "csr_wrong_certificate_id"
    RATE_LIMITED = "rate_limited"
    NO_ISSUING_PROVIDER = "no_issuing_provider"
    CLONE_SUSPECTED = "clone_suspected"

    # Why an established DTLS session ended.
    CLOSED_BY_PEER = "closed_by_peer"
    IDLE_TIMEOUT = "idle_timeout"
    SERVER_STOPPED = "server_stopped"
    PROVIDER_FAILED = "provider_failed"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    CERTIFICATE_ID_IMMUTABLE = "certificate_id_immutable"

    # Remote procedure calls to devices.
    DEVICE_NOT_CONNECTED = "device_not_connected"
    RPC_TIMED_OUT = "rpc_timed_out"

    # Firmware updates.
    ARTIFACT_IN_USE = "artifact_in_use"

    # Why the server closed an established session, besides idle and stop.
    QUARANTINED = "quarantined"
    DEVICE_DELETED = "device_deleted"
    CA_DISABLED = "ca_disabled"
    CA_DELETED = "ca_deleted"
    # A new handshake from the same address took the session's place.
    SESSION_REPLACED = "session_replaced"


class FleetgateError(Exception):
    """Base of every error Fleetgate raises on purpose."""

    http_status = 500
    coap_code = "5.00"
    reason: Reason = Reason.INVALID_INPUT

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidInput(FleetgateError, ValueError):
    """A value breaks a documented rule (grammar, size, encoding)."""

    http_status = 400
    coap_code = "4.00"
    reason = Reason.INVALID_INPUT


class PayloadTooLarge(InvalidInput):
    """A request body or value exceeds its size limit."""

    http_status = 413
    coap_code = "4.13"
    reason = Reason.PAYLOAD_TOO_LARGE


class InvalidCertificate(InvalidInput):
    """A certificate cannot be parsed or used for the requested purpose."""

    reason = Reason.MALFORMED_CERTIFICATE


class InvalidCsr(InvalidInput):
    """A certificate signing request cannot be parsed or its signature fails."""

    reason = Reason.MALFORMED_CSR


class CsrPolicyViolation(InvalidCsr):
    """A well-formed CSR whose key or signature algorithm the policy refuses."""

    http_status = 422
    # RFC 8132, section 5.3: the request is understood but cannot be served.
    coap_code = "4.22"
    reason = Reason.WEAK_KEY


class NotFound(FleetgateError, LookupError):
    """The named project, CA certificate, device or path does not exist."""

    http_status = 404
    coap_code = "4.04"
    reason = Reason.NOT_FOUND


class Conflict(FleetgateError):
    """A unique value (name, certificate ID, fingerprint) is already taken."""

    http_status = 409
    coap_code = "4.09"
    reason = Reason.CONFLICT


class Unauthenticated(FleetgateError):
    """A management API request carries no API key, or one that is not valid."""

    http_status = 401
    reason = Reason.INVALID_API_KEY


class Forbidden(FleetgateError):
    """A valid API key lacks the rights for a request (admin-only actions)."""

    http_status = 403
    reason = Reason.ADMIN_KEY_REQUIRED


class DeviceRejected(FleetgateError):
    """A device may not connect or act, with the identity it claimed."""

    http_status = 403
    coap_code = "4.03"
    reason = Reason.DEVICE_DISABLED

    def __init__(
        self,
        message: str,
        *,
        reason: Reason | None = None,
        project_id: str | None = None,
        certificate_id: str | None = None,
        fingerprint: str | None = None,
        psk_id: str | None = None,
        device_id: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.project_id = project_id
        self.certificate_id = certificate_id
        self.fingerprint = fingerprint
        # The part of a PSK identity before "@<project>", for PSK devices.
        self.psk_id = psk_id
        # The device record refused, when the refusal comes from it.
        self.device_id = device_id

    def log_fields(self) -> str:
        """Render the context as ``key=value`` fields for a log line."""
        device = "" if self.device_id is None else f" device={self.device_id}"
        if self.psk_id is not None:
            return (
                f"project={self.project_id or '-'} "
                f"psk_id={self.psk_id} "
                f"reason={self.reason}{device}"
            )
        return (
            f"project={self.project_id or '-'} "
            f"cert_id={self.certificate_id or '-'} "
            f"reason={self.reason} "
            f"fingerprint={self.fingerprint or '-'}{device}"
        )


class ChainRejected(DeviceRejected):
    """A device certificate chain failed verification or project policy."""

    reason = Reason.CHAIN_INVALID


class StartupFailed(FleetgateError):
    """A server cannot start, such as when its port is in use."""


class StoreUnavailable(FleetgateError):
    """The database cannot be reached, so retry after ``retry_after`` seconds."""

    http_status = 503
    coap_code = "5.03"
    reason = Reason.STORE_UNAVAILABLE
    # Sent as Retry-After and Max-Age. A guess at how long a database
    # restart or failover takes, not a measured figure.
    retry_after = 30


class WriteQueueFull(StoreUnavailable):
    """The gateway's queue of device writes is full; retry after ``retry_after``."""

    reason = Reason.WRITE_QUEUE_FULL

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(FleetgateError):
    """Too many requests; a slot frees in ``retry_after`` seconds."""

    http_status = 429
    coap_code = "4.29"
    reason = Reason.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoIssuingProvider(FleetgateError):
    """The project's PKI provider does not issue certificates."""

    http_status = 501
    coap_code = "5.01"
    reason = Reason.NO_ISSUING_PROVIDER


class ProviderFailed(FleetgateError):
    """The PKI provider refused a request or is misconfigured; do not retry."""

    http_status = 502
    coap_code = "5.00"
    reason = Reason.PROVIDER_FAILED


class ProviderUnavailable(FleetgateError):
    """The PKI provider is throttling or unreachable; retry after ``retry_after``."""

    http_status = 503
    coap_code = "5.03"
    reason = Reason.PROVIDER_UNAVAILABLE

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
