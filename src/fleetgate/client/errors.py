"""Exceptions raised by the device client.

The tree::

    ClientError
     +-- CredentialsError     (ValueError) a certificate, key or CA file is unusable
     +-- ServerUnreachable    (ConnectionError) the host replied with ICMP unreachable
     +-- HandshakeFailed      the DTLS handshake did not complete
     |    +-- HandshakeRefused      the server ended it with a fatal alert
     |    +-- ServerNotTrusted      the server's certificate failed verification
     |    +-- HandshakeTimeout      (also ClientTimeout)
     +-- ClientTimeout        (TimeoutError) no answer in time
     |    +-- RequestTimeout        a CoAP request or ping was never answered
     +-- SessionClosed        the server ended an established session
     +-- RequestRejected      the server answered a request with a CoAP Reset

Messages read "cannot <action>: <reason>". pyOpenSSL and socket errors
are translated once, where the client calls them, with ``raise ... from``.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the device client raises on purpose."""


class CredentialsError(ClientError, ValueError):
    """A certificate, private key or CA file cannot be loaded or used."""


class ServerUnreachable(ClientError, ConnectionError):
    """The server's host reported the UDP port closed (ICMP unreachable)."""


class HandshakeFailed(ClientError):
    """The DTLS handshake did not complete."""


class HandshakeRefused(HandshakeFailed):
    """The server ended the handshake with a fatal alert.

    ``alert`` is the TLS alert description name, such as ``unknown_ca``,
    ``certificate_expired`` or ``bad_certificate`` (RFC 5246 7.2).
    """

    def __init__(self, message: str, *, alert: str) -> None:
        super().__init__(message)
        self.alert = alert


class ServerNotTrusted(HandshakeFailed):
    """The server's certificate did not verify against the trusted CA."""

    def __init__(self, message: str, *, reason: str, depth: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.depth = depth


class ClientTimeout(ClientError, TimeoutError):
    """The server did not respond in time."""


class HandshakeTimeout(HandshakeFailed, ClientTimeout):
    """The DTLS handshake did not finish within the timeout."""


class RequestTimeout(ClientTimeout):
    """A CoAP request or ping got no matching response within the timeout."""


class SessionClosed(ClientError):
    """The server ended the established session (close_notify or an alert).

    ``alert`` is the alert description name when one was received.
    """

    def __init__(self, message: str, *, alert: str | None = None) -> None:
        super().__init__(message)
        self.alert = alert


class RequestRejected(ClientError):
    """The server rejected a confirmable request with a Reset (RFC 7252 4.2)."""
