"""The interface every PKI provider implements: list CAs, issue, report status.

A provider is built from a project's stored configuration for each use
and keeps no state between uses, so every gateway process sees the same
provider. Its methods block (files, network) and are called from worker
threads, never on the event loop.

A provider raises only Fleetgate errors: :class:`NoIssuingProvider` when
it cannot issue at all, :class:`ProviderUnavailable` with a retry delay
when the backend is throttling or unreachable, and
:class:`ProviderFailed` for everything else. Third-party errors are
translated once, inside the provider.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from typing import Any, ClassVar

from cryptography import x509


class ProviderKind(enum.StrEnum):
    """The kinds of PKI provider a project can use."""

    OFFLINE = "offline"
    LOCAL = "local"
    AWS_PCA = "aws-pca"


class ProviderState(enum.StrEnum):
    """A provider's health as last observed, stored as its ``status``."""

    # No issuing backend: CA certificates are uploaded by hand.
    OFFLINE = "offline"
    # Configured but not checked or synced yet.
    CONFIGURED = "configured"
    CONNECTED = "connected"
    ERROR = "error"


@dataclasses.dataclass(frozen=True)
class IssueRequest:
    """A checked CSR and the identity the issued certificate must carry.

    The subject comes from the authenticated connection, never from the
    CSR, which may name nothing at all.
    """

    csr: x509.CertificateSigningRequest
    project_id: str
    certificate_id: str
    device_id: str


@dataclasses.dataclass(frozen=True)
class IssuedChain:
    """A new device certificate and the CA certificates above it, if known."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


@dataclasses.dataclass(frozen=True)
class ProviderCa:
    """A CA certificate that the provider offers for trust now."""

    certificate: x509.Certificate
    # An identifier in the provider's terms, such as an ARN, for logs.
    name: str


@dataclasses.dataclass(frozen=True)
class ProviderHealth:
    """The result of a status check: state, a message when broken, CA count."""

    state: ProviderState
    ca_count: int = 0
    error: str | None = None


class PkiProvider(abc.ABC):
    """A source of CA certificates and, for most kinds, of device certificates."""

    kind: ClassVar[ProviderKind]

    @abc.abstractmethod
    def list_ca_certificates(self) -> list[ProviderCa]:
        """Return the CA certificates usable now, leaving disabled ones out."""

    @abc.abstractmethod
    def issue(self, request: IssueRequest) -> IssuedChain:
        """Issue a client certificate for the request's key and identity."""

    def status(self) -> ProviderHealth:
        """Check that the provider works and count its active CAs."""
        count = len(self.list_ca_certificates())
        return ProviderHealth(ProviderState.CONNECTED, ca_count=count)

    def public_settings(self) -> dict[str, Any]:
        """Return the settings to store and show: never a secret."""
        return {}
