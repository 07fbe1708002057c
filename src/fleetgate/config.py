"""Settings shared by every command: where data lives and how to reach it.

A data directory contains the embedded SQLite database and the development
server PKI. ``--database-url`` points elsewhere (PostgreSQL in
production); the data directory is still used for the server PKI.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

DEFAULT_DATA_DIR = Path("fleetgate-data")
DATABASE_FILE = "fleetgate.db"
DATA_DIR_ENV = "FLEETGATE_DATA_DIR"
DATABASE_URL_ENV = "FLEETGATE_DATABASE_URL"
LOG_FORMAT_ENV = "FLEETGATE_LOG_FORMAT"
METRICS_WITHOUT_KEY_ENV = "FLEETGATE_METRICS_WITHOUT_KEY"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Locations of Fleetgate's state: data directory and database URL."""

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None

    @classmethod
    def from_options(
        cls, data_dir: Path | None = None, database_url: str | None = None
    ) -> Settings:
        """Merge command-line options over environment variables."""
        env_dir = os.environ.get(DATA_DIR_ENV)
        resolved_dir = data_dir or (Path(env_dir) if env_dir else DEFAULT_DATA_DIR)
        url = database_url or os.environ.get(DATABASE_URL_ENV) or None
        return cls(data_dir=resolved_dir, database_url=url)

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL, defaulting to SQLite inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.default_database_file}"

    @property
    def default_database_file(self) -> Path:
        """The SQLite file in the data directory, used without a database URL."""
        return (self.data_dir / DATABASE_FILE).resolve()

    @property
    def server_pki_dir(self) -> Path:
        """Folder of the development server CA and server certificate."""
        return self.data_dir / "server-pki"

    @property
    def key_encryption_key_file(self) -> Path:
        """File of the key that seals PSK credentials in the database."""
        return self.data_dir / "psk-key-encryption.key"


@dataclasses.dataclass(frozen=True)
class ConnectionLogSettings:
    """Buffering, retention and flood limits of the connection log.

    Events wait in memory and are written in batches, so a handshake
    never waits for the database. The defaults keep 30 days of history
    and at most 100,000 events per project: about 30 MB per project, an
    estimate at some 300 bytes per row with its indexes.
    """

    # Events held while waiting for the writer; newer ones are dropped
    # and counted when it is full.
    buffer_size: int = 10_000
    batch_size: int = 500
    flush_interval: dt.timedelta = dt.timedelta(seconds=1)
    # Events older than this are deleted.
    retention: dt.timedelta = dt.timedelta(days=30)
    # Newest events kept per project; older ones are deleted.
    max_events_per_project: int = 100_000
    prune_interval: dt.timedelta = dt.timedelta(minutes=10)
    # Rejected handshakes recorded per project and minute. Beyond this,
    # refusals are only counted, so a flood of bad chains naming a real
    # project cannot push its other events out of the log.
    max_rejections_per_minute: int = 60


@dataclasses.dataclass(frozen=True)
class DeviceRateLimits:
    """Writes per second (rate) and in one burst that each device may make.

    Each resource has a token bucket per device. The response a device over its
    limit gets depends on how Golioth's firmware SDK takes an error
    response. It logs a failed post as a warning and posts that to its
    log, so log entries and settings status reports over the limit get
    2.04 and are dropped, because an error would add log traffic. A
    stream value or a firmware component report is data the device
    expects stored, so over the limit it gets 4.29 Too Many Requests with
    Max-Age, the seconds until a write is taken again. The defaults are
    estimates of what a well-behaved device sends, not measured figures.
    """

    # Log entries: a device logging at debug level during boot posts
    # tens of entries in a second.
    log_rate: float = 20.0
    log_burst: int = 50
    # LightDB Stream values: telemetry is typically seconds apart, but a
    # device may post several paths at once, or sample fast for a while,
    # so the limit matches the log's.
    stream_rate: float = 20.0
    stream_burst: int = 50
    # Settings status reports: one per settings read, and the SDK reads
    # once per registered setting at boot, then on each change.
    status_rate: float = 1.0
    status_burst: int = 20
    # Firmware component reports: about five per component per update.
    report_rate: float = 1.0
    report_burst: int = 20
    # At most one WARNING per device and resource counts the writes over
    # the limit in this interval.
    warn_interval: dt.timedelta = dt.timedelta(minutes=1)


DEFAULT_RATE_LIMITS = DeviceRateLimits()


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    """Tunables of the device gateway."""

    host: str = "::"
    port: int = 5684
    # Maximum datagram the gateway sends: the IPv6 minimum MTU of 1280
    # minus IP and UDP headers, so that no flight is fragmented in transit.
    mtu: int = 1232
    idle_timeout: dt.timedelta = dt.timedelta(minutes=5)
    max_sessions: int = 10_000
    # Handshakes in progress from one IP address. Generous, because many
    # devices behind one NAT reconnect together after an outage.
    max_handshakes_per_address: int = 256
    handshake_timeout: dt.timedelta = dt.timedelta(seconds=30)
    connection_log: ConnectionLogSettings = dataclasses.field(
        default_factory=ConnectionLogSettings
    )
    rate_limits: DeviceRateLimits = dataclasses.field(default_factory=DeviceRateLimits)
    # Gateway worker processes; more than 1 runs a WorkerPool.
    workers: int = 1
    # Set on every worker of ``fleetgate serve --workers N``: the workers
    # bind one port with SO_REUSEPORT and share the handshake cookie secret.
    reuse_port: bool = False
    cookie_secret: bytes | None = dataclasses.field(default=None, repr=False)
    # Whether this gateway keeps provider CA certificates in sync; one
    # worker of several does it.
    sync_providers: bool = True


@dataclasses.dataclass(frozen=True)
class ApiSettings:
    """The management API's listening address.

    Loopback by default: an API key travels in clear over plain HTTP, so
    reach the API from other machines through a TLS-terminating proxy.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    # Serve /metrics without an API key to clients on loopback addresses.
    metrics_without_key: bool = False


# Largest firmware artifact that an upload may carry, in bytes. Golioth's
# firmware SDK holds a component's size in an int32_t, so the hard limit
# is 2 GiB - 1. 16 MiB covers the flash of common microcontrollers, and
# a device at about 1 KiB per CoAP round trip needs 16384 requests for it.
MAX_ARTIFACT_BYTES = 16 * 1024 * 1024
