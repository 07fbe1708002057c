"""The ``aws-pca`` provider: AWS Private CA through boto3.

CA list: every ``ACTIVE`` CA of the account in the region
(ListCertificateAuthorities), each with its certificate
(GetCertificateAuthorityCertificate). CAs in any other state are left
out, so a sync disables them in the project.

Issuing: IssueCertificate on the configured CA with the template
``EndEntityClientAuthCertificate_APIPassthrough/V1``, which makes a TLS
client certificate and takes the subject from ``ApiPassthrough``. The
subject is ``O=<project>, CN=<certificate ID>`` from the connection,
whatever the CSR contains. The signing algorithm follows the CA's key. The
certificate is then fetched with GetCertificate, polled until AWS has
issued it or ``ISSUE_TIMEOUT`` passes.

Errors: throttling, quota and service or network outages raise
:class:`ProviderUnavailable` with a retry delay (the device gets 5.03
with Max-Age). Everything else, such as denied access, a disabled CA or
missing credentials, raises :class:`ProviderFailed` (5.00). Every error
is logged with the AWS error code, never with credentials.

Credentials come from boto3's standard chain unless the settings name a
key file (:mod:`fleetgate.providers.credentials`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from fleetgate.errors import (
    FleetgateError,
    InvalidInput,
    ProviderFailed,
    ProviderUnavailable,
)
from fleetgate.pki import issue, tools
from fleetgate.providers.base import (
    IssuedChain,
    IssueRequest,
    PkiProvider,
    ProviderCa,
    ProviderKind,
)
from fleetgate.providers.credentials import read_access_key

log = logging.getLogger(__name__)

TEMPLATE_ARN = (
    "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate_APIPassthrough/V1"
)
# How long issuing waits for GetCertificate to return the certificate.
ISSUE_TIMEOUT = 20.0
# Max-Age of a 5.03 after throttling or quota errors, and after outages.
THROTTLED_RETRY_AFTER = 10
UNAVAILABLE_RETRY_AFTER = 30
# Error codes after which the same request may succeed later.
_THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "LimitExceededException",
        "RequestInProgressException",
    }
)
_UNAVAILABLE_CODES = frozenset(
    {
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


class AwsPcaProvider(PkiProvider):
    """Lists and issues with AWS Private CA in one account and region."""

    kind = ProviderKind.AWS_PCA

    def __init__(
        self,
        *,
        region: str,
        ca_arn: str,
        endpoint_url: str | None = None,
        credentials_file: Path | None = None,
        days: int = issue.DEFAULT_DAYS,
    ) -> None:
        if not region:
            raise InvalidInput("cannot use AWS Private CA: the region is missing")
        if not ca_arn.startswith("arn:"):
            raise InvalidInput(
                f"cannot use AWS Private CA: {ca_arn!r} is not a CA ARN "
                "(arn:aws:acm-pca:REGION:ACCOUNT:certificate-authority/ID)"
            )
        if not 1 <= days <= tools.MAX_DAYS:
            raise InvalidInput(
                f"cannot use validity of {days} days: expected 1-{tools.MAX_DAYS}"
            )
        self.region = region
        self.ca_arn = ca_arn
        self.endpoint_url = endpoint_url
        self.credentials_file = credentials_file
        self.days = days

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> AwsPcaProvider:
        """Build the provider from stored settings."""
        try:
            credentials = settings.get("credentials_file")
            return cls(
                region=str(settings["region"]),
                ca_arn=str(settings["ca_arn"]),
                endpoint_url=settings.get("endpoint_url") or None,
                credentials_file=Path(credentials) if credentials else None,
                days=int(settings.get("days", issue.DEFAULT_DAYS)),
            )
        except (KeyError, ValueError) as exc:
            raise ProviderFailed(
                f"cannot use aws-pca provider settings: {exc!r} is missing or "
                "invalid; set the provider again"
            ) from exc

    def public_settings(self) -> dict[str, Any]:
        """Return region, CA, endpoint and validity, and only the key file's path."""
        return {
            "region": self.region,
            "ca_arn": self.ca_arn,
            "endpoint_url": self.endpoint_url,
            "credentials_file": (
                str(self.credentials_file) if self.credentials_file else None
            ),
            "days": self.days,
        }

    def list_ca_certificates(self) -> list[ProviderCa]:
        """Return the certificate of every ACTIVE CA in the account and region."""
        client = self._client()
        found = []
        with self._translated("list certificate authorities"):
            for authority in _authorities(client):
                if authority.get("Status") != "ACTIVE":
                    continue
                arn = str(authority["Arn"])
                found.append(ProviderCa(self._ca_certificate(client, arn), arn))
        return found

    def issue(self, request: IssueRequest) -> IssuedChain:
        """Issue a client certificate with IssueCertificate and fetch it."""
        client = self._client()
        with self._translated("issue a certificate"):
            ca_certificate = self._ca_certificate(client, self.ca_arn)
            csr_pem = request.csr.public_bytes(Encoding.PEM)
            issued = client.issue_certificate(
                CertificateAuthorityArn=self.ca_arn,
                Csr=csr_pem,
                SigningAlgorithm=signing_algorithm(ca_certificate),
                TemplateArn=TEMPLATE_ARN,
                Validity={"Value": self.days, "Type": "DAYS"},
                ApiPassthrough={
                    "Subject": {
                        "Organization": request.project_id,
                        "CommonName": request.certificate_id,
                    }
                },
                # AWS returns the same certificate for a repeated token
                # within five minutes, so a retried request is not issued twice.
                IdempotencyToken=_idempotency_token(request.device_id, csr_pem),
            )
            certificate_arn = str(issued["CertificateArn"])
            response = self._wait_for_certificate(client, certificate_arn)

        certificate = _load_pem(response["Certificate"], certificate_arn)
        chain_pem = response.get("CertificateChain") or ""
        chain = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem else []
        log.debug(
            "aws-pca issued certificate project=%s device=%s arn=%s",
            request.project_id,
            request.device_id,
            certificate_arn,
        )
        return IssuedChain(certificate, tuple(chain))

    def _client(self) -> Any:
        options: dict[str, Any] = {"region_name": self.region}
        if self.credentials_file is not None:
            key = read_access_key(self.credentials_file)
            options["aws_access_key_id"] = key.access_key_id
            options["aws_secret_access_key"] = key.secret_access_key
            options["aws_session_token"] = key.session_token
        session = boto3.session.Session(**options)
        config = Config(
            connect_timeout=5,
            read_timeout=15,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        return session.client("acm-pca", endpoint_url=self.endpoint_url, config=config)

    def _ca_certificate(self, client: Any, arn: str) -> x509.Certificate:
        response = client.get_certificate_authority_certificate(
            CertificateAuthorityArn=arn
        )
        return _load_pem(response["Certificate"], arn)

    def _wait_for_certificate(self, client: Any, certificate_arn: str) -> Any:
        # IssueCertificate is asynchronous: GetCertificate raises
        # RequestInProgressException until the certificate exists.
        deadline = time.monotonic() + ISSUE_TIMEOUT
        delay = 0.2
        while True:
            try:
                return client.get_certificate(
                    CertificateAuthorityArn=self.ca_arn,
                    CertificateArn=certificate_arn,
                )
            except ClientError as exc:
                if _error_code(exc) != "RequestInProgressException":
                    raise
                if time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    @contextlib.contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Turn boto3 errors inside the block into logged Fleetgate errors."""
        try:
            yield
        except FleetgateError:
            raise
        except Exception as exc:
            translated = translate_error(exc, f"cannot {action} with AWS Private CA")
            if translated is None:
                raise
            log.warning(
                "aws-pca request failed action=%r region=%s ca=%s reason=%s error=%s",
                action,
                self.region,
                self.ca_arn,
                translated.reason,
                translated.message,
            )
            raise translated from exc


def translate_error(exc: BaseException, prefix: str) -> FleetgateError | None:
    """Map a boto3 error to ProviderUnavailable or ProviderFailed; None for others."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ProviderFailed(
            f"{prefix}: no usable AWS credentials; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY or a profile, or pass --access-key-id"
        )
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return ProviderUnavailable(
            f"{prefix}: the endpoint cannot be reached ({exc})",
            retry_after=UNAVAILABLE_RETRY_AFTER,
        )
    if isinstance(exc, ClientError):
        code = _error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        detail = f"{prefix}: {code}: {message}".rstrip(": ")
        if code in _THROTTLING_CODES:
            return ProviderUnavailable(detail, retry_after=THROTTLED_RETRY_AFTER)
        if code in _UNAVAILABLE_CODES or int(status) >= 500:
            return ProviderUnavailable(detail, retry_after=UNAVAILABLE_RETRY_AFTER)
        return ProviderFailed(detail)
    if isinstance(exc, BotoCoreError):
        return ProviderFailed(f"{prefix}: {exc}")
    if isinstance(exc, ValueError):
        # A certificate or chain in the response that does not parse.
        return ProviderFailed(f"{prefix}: invalid response ({exc})")
    return None


def signing_algorithm(ca_certificate: x509.Certificate) -> str:
    """Return the IssueCertificate SigningAlgorithm that matches the CA's key."""
    key = ca_certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "SHA256WITHRSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size > 384:
            return "SHA512WITHECDSA"
        if key.curve.key_size > 256:
            return "SHA384WITHECDSA"
        return "SHA256WITHECDSA"
    raise ProviderFailed(
        f"cannot issue with AWS Private CA: its CA key type {type(key).__name__} "
        "is not RSA or ECDSA"
    )


def _authorities(client: Any) -> Iterator[dict[str, Any]]:
    paginator = client.get_paginator("list_certificate_authorities")
    # A bound on pages, so a misbehaving endpoint cannot loop forever.
    for page in paginator.paginate(PaginationConfig={"MaxItems": 1000}):
        yield from page.get("CertificateAuthorities", [])


def _load_pem(pem: str, arn: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise ProviderFailed(
            f"cannot read the certificate of {arn} returned by AWS Private CA"
        ) from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _idempotency_token(device_id: str, csr_pem: bytes) -> str:
    # IssueCertificate takes at most 36 characters here.
    digest = hashlib.sha256(device_id.encode() + b"\0" + csr_pem)
    return digest.hexdigest()[:32]
