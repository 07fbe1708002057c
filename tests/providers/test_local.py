"""The local provider: a CA key and certificate in files."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from fleetgate.errors import InvalidInput, NoIssuingProvider, ProviderFailed
from fleetgate.pki import issue, tools
from fleetgate.providers.base import IssueRequest, ProviderState
from fleetgate.providers.local import LocalProvider, generate_ca
from fleetgate.providers.offline import OfflineProvider


@pytest.fixture
def ca_files(tmp_path: Path) -> tuple[Path, Path]:
    return generate_ca(tmp_path / "ca", "acme")


@pytest.fixture
def provider(ca_files: tuple[Path, Path]) -> LocalProvider:
    return LocalProvider(*ca_files, days=issue.DEFAULT_DAYS)


def request_for(name: x509.Name) -> IssueRequest:
    """Return an issue request whose CSR has the given subject."""
    key = tools.make_device_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    csr = builder.sign(key, tools.signature_hash_for(key))
    return IssueRequest(csr, project_id="acme", certificate_id="dev-1", device_id="d")


def test_generated_key_has_mode_0600(ca_files: tuple[Path, Path]) -> None:
    key_path, cert_path = ca_files
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.parent.stat().st_mode) == 0o700


def test_generate_refuses_existing_files(
    tmp_path: Path, ca_files: tuple[Path, Path]
) -> None:
    with pytest.raises(InvalidInput, match="exists"):
        generate_ca(tmp_path / "ca", "acme")


def test_issued_certificate_is_v3_client_auth(provider: LocalProvider) -> None:
    request = request_for(x509.Name([]))
    issued = provider.issue(request).certificate

    assert issued.version is x509.Version.v3
    constraints = issued.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False
    usage = issued.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    eku = issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    issued.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    issued.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)


def test_subject_comes_from_connection(provider: LocalProvider) -> None:
    name = x509.Name.from_rfc4514_string("CN=ignored,O=ignored,C=DE")
    issued = provider.issue(request_for(name)).certificate
    assert issued.subject.rfc4514_string() == "CN=dev-1,O=acme"


def test_validity_defaults_to_90_days(provider: LocalProvider) -> None:
    issued = provider.issue(request_for(x509.Name([]))).certificate
    lifetime = issued.not_valid_after_utc - issued.not_valid_before_utc
    assert lifetime == dt.timedelta(days=90) + issue.BACKDATE


def test_validity_ends_with_the_ca(tmp_path: Path) -> None:
    key, root = tools.make_root("Short Root", days=10)
    tools.write_private_key(tmp_path / "k.pem", key)
    tools.write_certificate(tmp_path / "c.pem", root)
    provider = LocalProvider(tmp_path / "k.pem", tmp_path / "c.pem", days=90)

    issued = provider.issue(request_for(x509.Name([]))).certificate

    assert issued.not_valid_after_utc == root.not_valid_after_utc


@pytest.mark.parametrize(
    "days",
    [pytest.param(0, id="fail/zero"), pytest.param(3_000_000, id="fail/huge")],
)
def test_validity_out_of_range_is_invalid(
    ca_files: tuple[Path, Path], days: int
) -> None:
    with pytest.raises(InvalidInput, match=f"validity of {days} days"):
        LocalProvider(*ca_files, days=days)


def test_mismatched_key_fails(tmp_path: Path, ca_files: tuple[Path, Path]) -> None:
    other_key, _ = tools.make_root("Other")
    tools.write_private_key(tmp_path / "other.key", other_key)
    provider = LocalProvider(tmp_path / "other.key", ca_files[1], days=90)
    with pytest.raises(ProviderFailed, match="does not match"):
        provider.load_ca()


def test_missing_file_fails(tmp_path: Path, ca_files: tuple[Path, Path]) -> None:
    provider = LocalProvider(tmp_path / "none.key", ca_files[1], days=90)
    with pytest.raises(ProviderFailed, match="cannot read CA key"):
        provider.issue(request_for(x509.Name([])))


def test_status_reports_shared_key(provider: LocalProvider) -> None:
    assert provider.status().state is ProviderState.CONNECTED
    provider.ca_key.chmod(0o644)

    health = provider.status()

    assert health.state is ProviderState.ERROR
    assert health.error is not None
    assert "chmod 600" in health.error


def test_settings_missing_key_fail() -> None:
    with pytest.raises(ProviderFailed, match="set the provider again"):
        LocalProvider.from_settings({"ca_cert": "/c.pem"})


def test_offline_provider_does_not_issue() -> None:
    with pytest.raises(NoIssuingProvider, match="no issuing PKI provider") as caught:
        OfflineProvider().issue(request_for(x509.Name([])))
    assert caught.value.coap_code == "5.01"
    assert OfflineProvider().status().state is ProviderState.OFFLINE
