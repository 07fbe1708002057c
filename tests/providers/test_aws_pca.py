"""The AWS Private CA provider against moto's server mode.

moto 5.2 ignores ``ApiPassthrough``, ``SigningAlgorithm`` and
``Validity`` on IssueCertificate and adds no extensions for the
client-auth template, so the certificates it issues take their subject
from the CSR. Tests that expect a usable certificate therefore send a
CSR that names the device.
"""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from fleetgate.errors import ProviderFailed, ProviderUnavailable
from fleetgate.pki import tools
from fleetgate.pki.csr import DeviceIdentity
from fleetgate.pki.identity import fingerprint
from fleetgate.providers.aws_pca import (
    TEMPLATE_ARN,
    AwsPcaProvider,
    signing_algorithm,
    translate_error,
)
from fleetgate.providers.credentials import AwsAccessKey, write_access_key
from fleetgate.providers.sync import ProviderSyncLoop, sync_project
from fleetgate.rotation import rotate
from fleetgate.store import certificates, issued_certificates, pki_providers
from fleetgate.store.database import Database
from fleetgate.store.devices import create_device
from fleetgate.store.projects import create_project

from .conftest import REGION, MotoCa, make_root_ca

PROJECT = "acme"
CERT_ID = "dev-1"


def configure(db: Database, url: str, ca_arn: str, **extra: Any) -> None:
    """Make the project use AWS Private CA at ``url``, issuing from ``ca_arn``."""
    provider = AwsPcaProvider(region=REGION, ca_arn=ca_arn, endpoint_url=url, **extra)
    pki_providers.set_provider_config(
        db, PROJECT, "aws-pca", provider.public_settings(), status="configured"
    )


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, PROJECT)
    return database


@pytest.fixture
def device(db: Database) -> DeviceIdentity:
    record = create_device(db, PROJECT, CERT_ID, certificate_id=CERT_ID)
    return DeviceIdentity(PROJECT, CERT_ID, record.id)


def aws_fingerprints(db: Database) -> dict[str, bool]:
    """Map the fingerprints of the project's aws-pca CAs to their enabled flag."""
    return {
        ca.fingerprint: ca.enabled
        for ca in certificates.list_ca_certificates(db, PROJECT)
        if ca.source == "aws-pca"
    }


def fingerprint_of(ca: MotoCa) -> str:
    """Return the SHA-256 fingerprint of a moto CA's certificate."""
    return fingerprint(ca.certificate)


def test_sync_registers_active_cas(db: Database, pca: Any, moto_url: str) -> None:
    first, second = make_root_ca(pca, "Root A"), make_root_ca(pca, "Root B")
    configure(db, moto_url, first.arn)

    result = sync_project(db, PROJECT)

    assert set(result.added) == {fingerprint_of(first), fingerprint_of(second)}
    assert aws_fingerprints(db) == {
        fingerprint_of(first): True,
        fingerprint_of(second): True,
    }
    config = pki_providers.get_provider_config(db, PROJECT)
    assert config.status == "connected"
    assert config.ca_count == 2
    assert config.last_sync_at is not None


def test_sync_disables_disabled_and_deleted_cas(
    db: Database, pca: Any, moto_url: str
) -> None:
    kept, disabled, deleted = (make_root_ca(pca, f"Root {n}") for n in "ABC")
    _, uploaded = tools.make_root("Uploaded Root")
    certificates.add_ca_certificate(db, PROJECT, uploaded.public_bytes(Encoding.PEM))
    configure(db, moto_url, kept.arn)
    sync_project(db, PROJECT)

    pca.update_certificate_authority(
        CertificateAuthorityArn=disabled.arn, Status="DISABLED"
    )
    pca.delete_certificate_authority(CertificateAuthorityArn=deleted.arn)
    result = sync_project(db, PROJECT)

    assert set(result.disabled) == {fingerprint_of(disabled), fingerprint_of(deleted)}
    assert aws_fingerprints(db) == {
        fingerprint_of(kept): True,
        fingerprint_of(disabled): False,
        fingerprint_of(deleted): False,
    }
    uploads = [
        c
        for c in certificates.list_ca_certificates(db, PROJECT)
        if c.source == "upload"
    ]
    assert [c.enabled for c in uploads] == [True]


def test_sync_does_not_enable_again(db: Database, pca: Any, moto_url: str) -> None:
    ca = make_root_ca(pca)
    configure(db, moto_url, ca.arn)
    sync_project(db, PROJECT)
    pca.update_certificate_authority(CertificateAuthorityArn=ca.arn, Status="DISABLED")
    sync_project(db, PROJECT)

    pca.update_certificate_authority(CertificateAuthorityArn=ca.arn, Status="ACTIVE")
    result = sync_project(db, PROJECT)

    assert result.added == ()
    assert aws_fingerprints(db) == {fingerprint_of(ca): False}


def test_rotation_issues_certificate_from_moto_ca(
    db: Database, pca: Any, moto_url: str, device: DeviceIdentity
) -> None:
    ca = make_root_ca(pca)
    configure(db, moto_url, ca.arn)
    sync_project(db, PROJECT)
    csr = tools.make_device_csr(tools.make_device_key(), PROJECT, CERT_ID)

    rotation = rotate(db, device, csr.public_bytes(Encoding.DER))

    rotation.certificate.verify_directly_issued_by(ca.certificate)
    assert rotation.certificate.public_key() == csr.public_key()
    records = issued_certificates.list_issued_certificates(
        db, PROJECT, device.device_id
    )
    assert [r.provider for r in records] == ["aws-pca"]
    assert records[0].serial == format(rotation.certificate.serial_number, "x")


def test_rotation_with_unsynced_ca_is_not_handed_out(
    db: Database, pca: Any, moto_url: str, device: DeviceIdentity
) -> None:
    ca = make_root_ca(pca)
    configure(db, moto_url, ca.arn)
    csr = tools.make_device_csr(tools.make_device_key(), PROJECT, CERT_ID)

    with pytest.raises(ProviderFailed, match="provider sync"):
        rotate(db, device, csr.public_bytes(Encoding.DER))


def test_rotation_subject_from_moto_is_checked(
    db: Database, pca: Any, moto_url: str, device: DeviceIdentity
) -> None:
    # moto takes the subject from this CSR, not from ApiPassthrough, so
    # its certificate names nobody and must not reach the device.
    ca = make_root_ca(pca)
    configure(db, moto_url, ca.arn)
    sync_project(db, PROJECT)
    key = tools.make_device_key()
    empty = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    csr = empty.sign(key, tools.signature_hash_for(key))

    with pytest.raises(ProviderFailed, match="cannot hand out"):
        rotate(db, device, csr.public_bytes(Encoding.DER))


def test_unreachable_endpoint_is_unavailable(aws_env: None) -> None:
    provider = AwsPcaProvider(
        region=REGION,
        ca_arn="arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/x",
        # Port 1 on loopback has no listener, so connections are refused.
        endpoint_url="http://127.0.0.1:1",
    )
    with pytest.raises(ProviderUnavailable) as caught:
        provider.list_ca_certificates()
    assert caught.value.retry_after > 0
    assert caught.value.coap_code == "5.03"


def test_missing_credentials_fail(
    pca: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    provider = AwsPcaProvider(
        region=REGION, ca_arn=make_root_ca(pca).arn, endpoint_url=moto_url
    )
    with pytest.raises(ProviderFailed, match="no usable AWS credentials"):
        provider.list_ca_certificates()


def test_credentials_file_is_used(
    pca: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = make_root_ca(pca)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    key_file = tmp_path / "keys" / "acme-aws.json"
    write_access_key(key_file, AwsAccessKey("AKIDEXAMPLE", "s3cr3t"))
    provider = AwsPcaProvider(
        region=REGION, ca_arn=ca.arn, endpoint_url=moto_url, credentials_file=key_file
    )

    listed = provider.list_ca_certificates()

    assert [offer.name for offer in listed] == [ca.arn]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "s3cr3t" not in json.dumps(provider.public_settings())


def test_sync_loop_records_each_project(db: Database, pca: Any, moto_url: str) -> None:
    ca = make_root_ca(pca)
    configure(db, moto_url, ca.arn)

    results = asyncio.run(ProviderSyncLoop(db, interval=3600).run_once())

    assert [r.project_id for r in results] == [PROJECT]
    assert aws_fingerprints(db) == {fingerprint_of(ca): True}


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        pytest.param("ThrottlingException", 400, ProviderUnavailable, id="throttled"),
        pytest.param("LimitExceededException", 400, ProviderUnavailable, id="quota"),
        pytest.param("InternalFailure", 500, ProviderUnavailable, id="outage"),
        pytest.param("AccessDeniedException", 403, ProviderFailed, id="denied"),
        pytest.param("InvalidStateException", 400, ProviderFailed, id="ca-disabled"),
        pytest.param("MalformedCSRException", 400, ProviderFailed, id="bad-csr"),
    ],
)
def test_client_errors_are_translated(code: str, status: int, expected: type) -> None:
    error = ClientError(
        {
            "Error": {"Code": code, "Message": "details"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "IssueCertificate",
    )
    translated = translate_error(error, "cannot issue")
    assert type(translated) is expected
    assert translated is not None
    assert code in translated.message


def test_connection_error_is_unavailable() -> None:
    translated = translate_error(
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "cannot list"
    )
    assert isinstance(translated, ProviderUnavailable)


@pytest.mark.parametrize(
    ("key_type", "algorithm"),
    [
        pytest.param("ec-p256", "SHA256WITHECDSA", id="p256"),
        pytest.param("ec-p384", "SHA384WITHECDSA", id="p384"),
        pytest.param("rsa2048", "SHA256WITHRSA", id="rsa"),
    ],
)
def test_signing_algorithm_follows_ca_key(
    key_type: tools.KeyType, algorithm: str
) -> None:
    _, root = tools.make_root("Root", key_type)
    assert signing_algorithm(root) == algorithm


def test_template_is_client_auth_passthrough() -> None:
    assert TEMPLATE_ARN.endswith("EndEntityClientAuthCertificate_APIPassthrough/V1")
