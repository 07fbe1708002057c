"""The ``offline`` provider: CA certificates are uploaded by hand, nothing is issued.

This is every project's provider until another is set. Its CA list is
empty, because uploaded CA certificates are the project's own and a sync
must never disable them. A device that requests a new certificate
gets CoAP 5.01 Not Implemented with a diagnostic that gives the reason.
"""

from __future__ import annotations

from fleetgate.errors import NoIssuingProvider
from fleetgate.providers.base import (
    IssuedChain,
    IssueRequest,
    PkiProvider,
    ProviderCa,
    ProviderHealth,
    ProviderKind,
    ProviderState,
)


class OfflineProvider(PkiProvider):
    """A provider that lists nothing and issues nothing."""

    kind = ProviderKind.OFFLINE

    def list_ca_certificates(self) -> list[ProviderCa]:
        """Return no CA certificates: uploads are not the provider's."""
        return []

    def issue(self, request: IssueRequest) -> IssuedChain:
        """Raise NoIssuingProvider, because an offline PKI issues nothing here."""
        raise NoIssuingProvider(
            f"cannot issue a certificate: project {request.project_id!r} has no "
            "issuing PKI provider (it is 'offline'); configure one with "
            "'fleetgate provider set'"
        )

    def status(self) -> ProviderHealth:
        """Report the offline state; there is nothing to check."""
        return ProviderHealth(ProviderState.OFFLINE)
