"""SQLAlchemy models: the tables every Fleetgate process shares.

Uniqueness that the association rule depends on is enforced by the
database, never by application code alone: (project, certificate ID) and
(project, name) for devices, (project, fingerprint) for CA certificates.
The audit log has no foreign keys, so its entries outlive what they name.
Timestamps are stored in UTC; :class:`UtcDateTime` restores the time zone
that SQLite drops.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates
from sqlalchemy.types import TypeDecorator

from fleetgate.errors import Conflict, Reason


def new_id() -> str:
    """Return a new 24-character hexadecimal record ID."""
    return secrets.token_hex(12)


def utcnow() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """An aware UTC datetime on every backend, including SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"cannot store naive datetime {value!r}: use UTC")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s_%(column_1_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Project(Base):
    """A tenant; its ``id`` is the slug devices carry in their subject O."""

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    require_v3: Mapped[bool] = mapped_column(Boolean, default=False)
    # Zero-touch provisioning creates devices only for certificate IDs
    # listed in a manufacturing manifest.
    require_manifest: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class CaCertificate(Base):
    """A root or intermediate CA certificate registered in one project."""

    __tablename__ = "ca_certificates"
    __table_args__ = (UniqueConstraint("project_id", "fingerprint"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    der: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(String(1024))
    issuer: Mapped[str] = mapped_column(String(1024))
    # Lowercase hex SHA-256 of the DER encoding.
    fingerprint: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    cert_type: Mapped[str] = mapped_column(String(16))  # root | intermediate
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String(32), default="upload")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Device(Base):
    """A device record; ``certificate_id`` is set at most once."""

    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        UniqueConstraint("project_id", "certificate_id"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    certificate_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    hardware_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_certificate_fingerprint: Mapped[str | None] = mapped_column(
        String(64), nullable=True
    )
    last_certificate_not_after: Mapped[dt.datetime | None] = mapped_column(
        UtcDateTime, nullable=True
    )
    # The CA certificates of the last verified chain, the issuer of the
    # device certificate first and the registered anchor last, each as
    # {"fingerprint", "subject", "notAfter"}. None until first recorded.
    ca_chain: Mapped[list[dict[str, str]] | None] = mapped_column(
        JSON, nullable=True
    )

    @validates("certificate_id")
    def _keep_certificate_id(self, _key: str, value: str | None) -> str | None:
        # A certificate ID ties a physical device to this record, so once
        # set it never changes, whichever code path tries.
        current = self.certificate_id
        if current is not None and value != current:
            raise Conflict(
                f"cannot change certificate ID of device {self.id}: "
                f"it is {current!r}, and a certificate ID never changes",
                reason=Reason.CERTIFICATE_ID_IMMUTABLE,
            )
        return value


class DeviceState(Base):
    """The LightDB State document of one device, as one JSON tree."""

    __tablename__ = "device_state"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    document: Mapped[Any] = mapped_column(JSON, default=dict)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class ApiKey(Base):
    """A management API key; ``project_id`` None makes it an admin key.

    Only the SHA-256 of the key is stored. The ``prefix`` is the key's
    first characters, which select the candidate rows and are shown in
    listings so that people can tell their keys apart.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    # Lowercase hex SHA-256 of the whole key as sent in requests.
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AuditEntry(Base):
    """One management action: who did what to which record, and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # None for actions outside any project, such as creating an admin key.
    project_id: Mapped[str | None] = mapped_column(
        String(63), nullable=True, index=True
    )
    # The ID of the API key that acted, or "cli" for the command line.
    actor: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class PkiProviderConfig(Base):
    """The PKI provider of one project, its settings and its last known status.

    ``settings`` never contains secrets. Credentials live in the
    environment or in a file whose path the settings name.
    """

    __tablename__ = "pki_providers"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # offline | local | aws-pca
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    ca_count: Mapped[int] = mapped_column(Integer, default=0)
    max_rotations_per_hour: Mapped[int] = mapped_column(Integer, default=10)
    last_sync_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class IssuedCertificate(Base):
    """A device certificate that a PKI provider issued through Fleetgate."""

    __tablename__ = "issued_certificates"
    __table_args__ = (
        # Serves the per-device rotation count over the last hour.
        Index("ix_issued_certificates_device_id_created_at", "device_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    # Lowercase hex of the serial number. RFC 5280, section 4.1.2.2 allows
    # 20 octets (40 digits); the rest is room for non-conforming CAs.
    serial: Mapped[str] = mapped_column(String(64))
    # Lowercase hex SHA-256 of the DER encoding.
    fingerprint: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    provider: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class DeviceLog(Base):
    """One log entry that a device posted, timestamped on receipt."""

    __tablename__ = "device_logs"
    __table_args__ = (
        # Serves the per-device time-range query, newest first.
        Index("ix_device_logs_device_id_received_at", "device_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    level: Mapped[str] = mapped_column(String(16))
    module: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    # Attributes of the entry other than level, module, message and time.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class StreamRecord(Base):
    """One LightDB Stream value that a device posted, timestamped on receipt."""

    __tablename__ = "device_stream"
    __table_args__ = (
        Index("ix_device_stream_device_id_received_at", "device_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Slash-separated path below ``.s``; empty for a post to ``.s`` itself.
    path: Mapped[str] = mapped_column(String(512))
    value: Mapped[Any] = mapped_column(JSON, nullable=True)


class RevocationList(Base):
    """The CRL last loaded for one registered CA certificate (RFC 5280, 5)."""

    __tablename__ = "revocation_lists"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    # One CRL per CA certificate: loading another replaces it.
    ca_certificate_id: Mapped[str] = mapped_column(
        ForeignKey("ca_certificates.id", ondelete="CASCADE"), unique=True, index=True
    )
    der: Mapped[bytes] = mapped_column(LargeBinary)
    # Lowercase hex SHA-256 of the DER encoding.
    fingerprint: Mapped[str] = mapped_column(String(64))
    this_update: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    next_update: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # The cRLNumber extension in decimal, up to 20 octets (RFC 5280, 5.2.3).
    crl_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoked_count: Mapped[int] = mapped_column(Integer)
    loaded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Setting(Base):
    """One settings key of a project, or a device's override of it.

    A row without ``device_id`` is the project's value of the key, and a
    row with one overrides it for that device. The store allows one row
    per (project, device, key), checking it in the transaction, because
    SQL unique constraints treat every NULL ``device_id`` as distinct.
    """

    __tablename__ = "settings"
    __table_args__ = (
        Index("ix_settings_project_id_device_id", "project_id", "device_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE")
    )
    device_id: Mapped[str | None] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), nullable=True
    )
    key: Mapped[str] = mapped_column(String(63))
    # An integer, float, boolean or string: the types the SDK decodes.
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class PskCredential(Base):
    """A DTLS pre-shared key of one device, sealed by the key-encryption key.

    ``identity`` is ``<psk-id>@<project-id>``, unique across projects.
    ``sealed_key`` is the AES-256-GCM nonce, ciphertext and tag of the
    key, bound to this row's ID, project, device and identity, so it
    cannot be moved to another row.
    """

    __tablename__ = "psk_credentials"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )
    identity: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    # KeyEncryptionKey.key_id of the key that sealed it.
    key_encryption_key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ConnectionEventRow(Base):
    """One line of a project's connection log: a handshake or a session end.

    There is no foreign key to the device, so the log keeps its history
    after a device is deleted; deleting the project deletes its log.
    """

    __tablename__ = "connection_events"
    __table_args__ = (
        # Serve the newest-first listing, whole or by certificate ID,
        # and the count-based pruning per project.
        Index("ix_connection_events_project_id_id", "project_id", "id"),
        Index(
            "ix_connection_events_project_id_certificate_id_id",
            "project_id",
            "certificate_id",
            "id",
        ),
        # Serves the pruning by age.
        Index("ix_connection_events_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    )
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE")
    )
    device_id: Mapped[str | None] = mapped_column(String(24), nullable=True)
    certificate_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # host:port of the device, such as ::ffff:192.0.2.7:40112.
    peer: Mapped[str] = mapped_column(String(64))
    # accepted | rejected | closed | clone_suspected
    result: Mapped[str] = mapped_column(String(16))
    # A fleetgate.errors.Reason value; None for an accepted handshake.
    reason: Mapped[str | None] = mapped_column(String(48), nullable=True)
    # Lowercase hex SHA-256 of the device certificate.
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # For clone_suspected: the address of the other live session.
    other_peer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class OtaArtifact(Base):
    """A firmware image of one package and version, uploaded to a project.

    The bytes live in :class:`OtaArtifactChunk` rows, so that serving one
    block of a download reads one chunk instead of the whole image.
    """

    __tablename__ = "ota_artifacts"
    __table_args__ = (UniqueConstraint("project_id", "package", "version"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    package: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(32))
    # Bootloader name sent in the manifest, such as "mcuboot".
    bootloader: Mapped[str] = mapped_column(String(7))
    size: Mapped[int] = mapped_column(Integer)
    # Lowercase hex SHA-256 of the whole image.
    sha256: Mapped[str] = mapped_column(String(64))
    chunk_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class OtaArtifactChunk(Base):
    """One fixed-size slice of an artifact's bytes; the last may be shorter."""

    __tablename__ = "ota_artifact_chunks"

    artifact_id: Mapped[str] = mapped_column(
        ForeignKey("ota_artifacts.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class OtaRelease(Base):
    """A named set of artifacts, one per package, and where it is rolled out.

    ``sequence`` is the project's OTA sequence number taken by the latest
    rollout or rollback of this release, and 0 before the first.
    """

    __tablename__ = "ota_releases"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    rolled_out: Mapped[bool] = mapped_column(Boolean, default=False)
    # Targets: every device of the project, or the listed devices and
    # the devices carrying any of ``tags``.
    all_devices: Mapped[bool] = mapped_column(Boolean, default=False)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class OtaReleaseArtifact(Base):
    """One artifact of a release; an artifact in a release cannot be deleted."""

    __tablename__ = "ota_release_artifacts"

    release_id: Mapped[str] = mapped_column(
        ForeignKey("ota_releases.id", ondelete="CASCADE"), primary_key=True
    )
    package: Mapped[str] = mapped_column(String(32), primary_key=True)
    artifact_id: Mapped[str] = mapped_column(
        ForeignKey("ota_artifacts.id", ondelete="RESTRICT"), index=True
    )


class OtaReleaseDevice(Base):
    """One device that a release is rolled out to by its ID."""

    __tablename__ = "ota_release_devices"

    release_id: Mapped[str] = mapped_column(
        ForeignKey("ota_releases.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class OtaComponentReport(Base):
    """One firmware component state that a device posted to ``.u/c/<package>``."""

    __tablename__ = "ota_component_reports"
    __table_args__ = (
        # Serves the latest report per package and the history, newest first.
        Index("ix_ota_component_reports_device_id_package", "device_id", "package"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    package: Mapped[str] = mapped_column(String(32))
    # The SDK's golioth_ota_state and golioth_ota_reason numbers.
    state: Mapped[int] = mapped_column(Integer)
    reason: Mapped[int] = mapped_column(Integer)
    current_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class ConsoleSession(Base):
    """A signed-in web console session, opened with an API key.

    The browser holds a random session token in a cookie. Only its
    SHA-256 is stored, so a copy of the table cannot sign anyone in.
    """

    __tablename__ = "console_sessions"

    # Lowercase hex SHA-256 of the session token.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    # Sent back in every form of the console and checked on every POST.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class ManifestEntry(Base):
    """One certificate ID that a manufacturing batch is expected to contain."""

    __tablename__ = "manifest_entries"
    __table_args__ = (
        # Serves the lookup of zero-touch provisioning under require_manifest.
        UniqueConstraint("project_id", "certificate_id"),
        Index("ix_manifest_entries_project_id_batch", "project_id", "batch"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE")
    )
    batch: Mapped[str] = mapped_column(String(128))
    certificate_id: Mapped[str] = mapped_column(String(128))
    serial: Mapped[str | None] = mapped_column(String(128), nullable=True)
    hardware_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Quarantine(Base):
    """Devices disabled together, by manifest batch or by CA certificate."""

    __tablename__ = "quarantines"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # batch | ca
    # The batch name, or the CA certificate's fingerprint.
    target: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    released_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class QuarantinedDevice(Base):
    """A device that a quarantine disabled and re-enables on release."""

    __tablename__ = "quarantine_devices"

    quarantine_id: Mapped[str] = mapped_column(
        ForeignKey("quarantines.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True
    )

