"""A moto server in AWS Private CA's place, and helpers to make CAs in it.

moto runs in server mode on loopback with a kernel-chosen port, and the
tests talk to it through the provider's ``endpoint_url`` with fake
credentials from the environment. ``AWS_EC2_METADATA_DISABLED`` keeps
boto3 from asking an instance metadata address when credentials are
missing, so no test sends traffic beyond loopback.
"""

from __future__ import annotations

import dataclasses
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cryptography import x509
from moto.server import ThreadedMotoServer

REGION = "eu-west-1"
ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
}


@dataclasses.dataclass(frozen=True)
class MotoCa:
    """A CA made in moto: its ARN and certificate."""

    arn: str
    certificate: x509.Certificate


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """The URL of a moto server that lives for the whole test session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials in the environment, for boto3's standard chain."""
    for name, value in FAKE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def pca(moto_url: str, aws_env: None) -> Iterator[Any]:
    """A boto3 ACM PCA client of an emptied moto server."""
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    yield boto3.client("acm-pca", region_name=REGION, endpoint_url=moto_url)


def make_root_ca(pca: Any, common_name: str = "Moto Root") -> MotoCa:
    """Create an ACTIVE root CA, as the AWS console's root CA steps do."""
    arn = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {"CommonName": common_name, "Organization": "Fleetgate Tests"},
        },
        CertificateAuthorityType="ROOT",
    )["CertificateAuthorityArn"]
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    issued = pca.issue_certificate(
        CertificateAuthorityArn=arn,
        Csr=csr,
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn=ROOT_TEMPLATE,
        Validity={"Value": 5, "Type": "YEARS"},
    )
    pem = pca.get_certificate(
        CertificateAuthorityArn=arn, CertificateArn=issued["CertificateArn"]
    )["Certificate"]
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=pem
    )
    return MotoCa(arn, x509.load_pem_x509_certificate(pem.encode()))
