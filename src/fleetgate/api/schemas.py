"""Request and response bodies, with the camelCase names Golioth uses.

Single items travel as ``{"data": {...}}`` and lists as ``{"list": [...],
"page": N, "perPage": N, "total": N}`` with pages counted from 0.
Unknown fields in a request body are ignored, as Golioth's API does,
so a script that sends ``blueprintId`` or ``cohortId`` still works.
Timestamps are ISO 8601 in UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, Literal, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import SignatureAlgorithmOID
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from fleetgate.store.audit import AuditRecord
from fleetgate.store.certificates import CaCertificateRecord
from fleetgate.store.device_logs import LogEntry
from fleetgate.store.devices import DeviceRecord
from fleetgate.store.projects import ProjectRecord
from fleetgate.store.revocation import RevocationListRecord
from fleetgate.store.stream import StreamEntry

Item = TypeVar("Item")

# Names such as ECDSA_WITH_SHA256, from cryptography's public OID table.
_SIGNATURE_NAMES = {
    value: name
    for name, value in vars(SignatureAlgorithmOID).items()
    if isinstance(value, x509.ObjectIdentifier) and not name.startswith("_")
}


class ApiModel(BaseModel):
    """A body whose fields are camelCase on the wire and snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class One(ApiModel, Generic[Item]):
    """One item, as ``{"data": ...}``."""

    data: Item


class Page(ApiModel, Generic[Item]):
    """One page of a listing; ``page`` counts from 0."""

    items: list[Item] = Field(serialization_alias="list")
    page: int
    per_page: int
    total: int


class Empty(ApiModel):
    """The empty object that a deletion returns, as Golioth's API does."""


class Project(ApiModel):
    """A project; its ``id`` is the ``O`` of its device certificates."""

    id: str
    name: str
    require_v3: bool
    created_at: dt.datetime

    @classmethod
    def of(cls, record: ProjectRecord) -> Project:
        """Render a stored project."""
        return cls(
            id=record.id,
            name=record.name,
            require_v3=record.require_v3,
            created_at=record.created_at,
        )


class ProjectCreate(ApiModel):
    """A new project. Without ``id`` the ID is made from ``name``."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": "acme-sensors", "name": "ACME sensors"}]}
    )

    id: str | None = None
    name: str | None = None
    require_v3: bool = False


class CertificateContent(ApiModel):
    """Fields read from a CA certificate, under Golioth's names."""

    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    serial_number: str
    signature_algorithm: str
    public_key_algorithm: str
    version: int
    key_usages: list[str]

    @classmethod
    def of(cls, certificate: x509.Certificate) -> CertificateContent:
        """Describe a parsed certificate."""
        return cls(
            subject=certificate.subject.rfc4514_string(),
            issuer=certificate.issuer.rfc4514_string(),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            serial_number=format(certificate.serial_number, "x"),
            signature_algorithm=_signature_algorithm(certificate),
            public_key_algorithm=_key_algorithm(certificate),
            version=certificate.version.value + 1,
            key_usages=_key_usages(certificate),
        )


class Certificate(ApiModel):
    """A CA certificate registered in a project."""

    id: str
    project_id: str
    cert_type: Literal["root", "intermediate"]
    subject: str
    issuer: str
    fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    enabled: bool
    source: str
    created_at: dt.datetime
    certificate_content: CertificateContent

    @classmethod
    def of(cls, record: CaCertificateRecord) -> Certificate:
        """Render a stored CA certificate."""
        return cls(
            id=record.id,
            project_id=record.project_id,
            cert_type=record.cert_type,
            subject=record.subject,
            issuer=record.issuer,
            fingerprint=record.fingerprint,
            not_before=record.not_before,
            not_after=record.not_after,
            enabled=record.enabled,
            source=record.source,
            created_at=record.created_at,
            certificate_content=CertificateContent.of(record.certificate()),
        )


class CertificateUpload(ApiModel):
    """A CA certificate to register: base64 of its PEM or DER encoding.

    Without ``certType`` a self-signed certificate is a root and any
    other an intermediate.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "certFile": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJ...",
                    "certType": "root",
                }
            ]
        }
    )

    cert_file: str
    cert_type: Literal["root", "intermediate"] | None = None


class RevocationListUpload(ApiModel):
    """A CRL that a registered CA certificate signed: base64 of its PEM or DER."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"crlFile": "LS0tLS1CRUdJTiBYNTA5IENSTC0tLS0tCk1JSUI..."}]
        }
    )

    crl_file: str


class RevocationList(ApiModel):
    """The CRL loaded for a CA certificate; devices it lists are rejected."""

    id: str
    certificate_id: str
    fingerprint: str
    this_update: dt.datetime
    next_update: dt.datetime | None
    crl_number: str | None
    revoked_count: int
    loaded_at: dt.datetime
    # True when nextUpdate has passed. The entries are still used.
    expired: bool

    @classmethod
    def of(cls, record: RevocationListRecord) -> RevocationList:
        """Build the API view of a stored CRL."""
        return cls(
            id=record.id,
            certificate_id=record.ca_certificate_id,
            fingerprint=record.fingerprint,
            this_update=record.this_update,
            next_update=record.next_update,
            crl_number=record.crl_number,
            revoked_count=record.revoked_count,
            loaded_at=record.loaded_at,
            expired=record.expired(dt.datetime.now(dt.UTC)),
        )


class CertificateUpdate(ApiModel):
    """Whether a CA certificate is a trust anchor."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": False}]})

    enabled: bool


class DeviceCertificate(ApiModel):
    """The gateway's record of a device's last certificate and connection."""

    certificate_id: str | None
    last_fingerprint: str | None
    not_after: dt.datetime | None
    last_seen: dt.datetime | None


class Device(ApiModel):
    """A device record; ``tagIds`` are free-form labels here."""

    id: str
    project_id: str
    name: str
    hardware_ids: list[str]
    tag_ids: list[str]
    enabled: bool
    certificate_id: str | None
    metadata: dict[str, Any]
    last_report: dt.datetime | None
    created_at: dt.datetime
    certificate: DeviceCertificate

    @classmethod
    def of(cls, record: DeviceRecord) -> Device:
        """Render a stored device."""
        return cls(
            id=record.id,
            project_id=record.project_id,
            name=record.name,
            hardware_ids=list(record.hardware_ids),
            tag_ids=list(record.tags),
            enabled=record.enabled,
            certificate_id=record.certificate_id,
            metadata=record.metadata,
            last_report=record.last_seen_at,
            created_at=record.created_at,
            certificate=DeviceCertificate(
                certificate_id=record.certificate_id,
                last_fingerprint=record.last_certificate_fingerprint,
                not_after=record.last_certificate_not_after,
                last_seen=record.last_seen_at,
            ),
        )


class DeviceCreate(ApiModel):
    """A device to create before it first connects.

    A certificate whose ID equals ``name`` adopts the device on its first
    connection, unless ``certificateId`` binds it now.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "sensor-0001",
                    "hardwareIds": ["mac:00:11:22:33:44:55"],
                    "tagIds": ["floor-2"],
                    "metadata": {"site": "Lyon"},
                }
            ]
        }
    )

    name: str
    hardware_ids: list[str] = []
    tag_ids: list[str] = []
    metadata: dict[str, Any] = {}
    certificate_id: str | None = None


class DeviceUpdate(ApiModel):
    """Fields to change on a device; absent or null fields stay as they are.

    ``certificateId`` can be set once and never changed. The ``add`` and
    ``remove`` lists edit hardware IDs and tags after any full list.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "boiler-room-sensor", "enabled": False},
                {"certificateId": "sensor-0001", "addTagId": ["calibrated"]},
            ]
        }
    )

    name: str | None = None
    enabled: bool | None = None
    certificate_id: str | None = None
    hardware_ids: list[str] | None = None
    tag_ids: list[str] | None = None
    metadata: dict[str, Any] | None = None
    add_hardware_id: list[str] = []
    remove_hardware_id: list[str] = []
    add_tag_id: list[str] = []
    remove_tag_id: list[str] = []


class AuditEntry(ApiModel):
    """One management action in a project's audit log."""

    id: int
    project_id: str | None
    actor: str
    action: str
    target_type: str
    target_id: str
    details: dict[str, Any]
    created_at: dt.datetime

    @classmethod
    def of(cls, record: AuditRecord) -> AuditEntry:
        """Render a stored audit entry."""
        return cls(**{field: getattr(record, field) for field in cls.model_fields})


def _signature_algorithm(certificate: x509.Certificate) -> str:
    oid = certificate.signature_algorithm_oid
    return _SIGNATURE_NAMES.get(oid, oid.dotted_string)


def _key_algorithm(certificate: x509.Certificate) -> str:
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def _key_usages(certificate: x509.Certificate) -> list[str]:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    ]
    # encipher_only and decipher_only raise unless key_agreement is set.
    if usage.key_agreement:
        names += ["encipher_only", "decipher_only"]
    return [to_camel(name) for name in names if getattr(usage, name)]


class DeviceLogEntry(ApiModel):
    """A log entry that a device posted; ``timestamp`` is when it arrived."""

    id: int
    device_id: str
    timestamp: dt.datetime
    level: str
    module: str
    message: str
    metadata: dict[str, Any]

    @classmethod
    def of(cls, record: LogEntry) -> DeviceLogEntry:
        """Render a stored log entry."""
        return cls(
            id=record.id,
            device_id=record.device_id,
            timestamp=record.received_at,
            level=record.level,
            module=record.module,
            message=record.message,
            metadata=record.metadata,
        )


class StreamItem(ApiModel):
    """A LightDB Stream record; ``data`` nests the value under its path."""

    id: int
    device_id: str
    timestamp: dt.datetime
    path: str
    data: Any

    @classmethod
    def of(cls, record: StreamEntry) -> StreamItem:
        """Render a stored stream record."""
        return cls(
            id=record.id,
            device_id=record.device_id,
            timestamp=record.received_at,
            path="/".join(record.path),
            data=record.nested(),
        )
