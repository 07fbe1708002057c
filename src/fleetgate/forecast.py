"""Expiry forecast: how many devices lose service on which date.

A device keeps service while every certificate it depends on is valid.
These are its own certificate (the one it last connected with), each CA
certificate of the chain it last presented (recorded at association,
registered or sent by the device), and the server certificate chain
that devices verify the gateway with. If nothing is rotated, a device
loses service at the earliest ``notAfter`` among these.

:func:`expiry_forecast` counts enabled devices by that date, week by
week from 00:00 UTC of the day of ``now``, and lists each CA certificate and each server
certificate with the number of devices whose service it ends first.
Devices that never connected have no certificate on record and are not
counted; devices that connected only before chains were recorded are
counted by their own certificate and the server chain alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from sqlalchemy import select

from fleetgate.errors import InvalidInput, NotFound
from fleetgate.pki.identity import fingerprint, load_certificates
from fleetgate.store.database import Database
from fleetgate.store.models import CaCertificate, Device, Project

MAX_WEEKS = 520
WEEK = dt.timedelta(weeks=1)

CertificateKind = Literal["device", "ca", "server"]


@dataclasses.dataclass(frozen=True)
class WeekForecast:
    """Devices whose service ends in one week, by what expires first."""

    start: dt.datetime
    end: dt.datetime
    devices: int
    # Devices whose own certificate, a CA certificate, or the server
    # chain expires first; they add up to ``devices``.
    by_device_certificate: int
    by_ca: int
    by_server: int


@dataclasses.dataclass(frozen=True)
class CertificateForecast:
    """A CA or server certificate and the devices its expiry ends first."""

    kind: CertificateKind
    subject: str
    fingerprint: str
    not_after: dt.datetime
    # Devices whose service depends on this certificate.
    devices: int
    # Devices for which this certificate is the first to expire.
    devices_lost: int
    # The registered CA certificate's ID; None for a server certificate
    # or an intermediate that devices send but the project lacks.
    ca_id: str | None = None


@dataclasses.dataclass(frozen=True)
class ExpiryForecast:
    """The forecast from ``now`` over ``len(weeks)`` weeks."""

    now: dt.datetime
    weeks: list[WeekForecast]
    certificates: list[CertificateForecast]
    # Enabled devices counted, whose service has already ended, and
    # whose service lasts beyond the last week.
    devices: int
    expired: int
    beyond: int

    def to_json(self) -> dict[str, Any]:
        """Render as the API's JSON object, with camelCase names."""
        return {
            "now": self.now.isoformat(),
            "devices": self.devices,
            "expired": self.expired,
            "beyond": self.beyond,
            "weeks": [
                {
                    "start": week.start.isoformat(),
                    "end": week.end.isoformat(),
                    "devices": week.devices,
                    "byDeviceCertificate": week.by_device_certificate,
                    "byCa": week.by_ca,
                    "byServer": week.by_server,
                }
                for week in self.weeks
            ],
            "certificates": [
                {
                    "kind": item.kind,
                    "subject": item.subject,
                    "fingerprint": item.fingerprint,
                    "notAfter": item.not_after.isoformat(),
                    "devices": item.devices,
                    "devicesLost": item.devices_lost,
                    "caId": item.ca_id,
                }
                for item in self.certificates
            ],
        }


@dataclasses.dataclass
class _Tracked:
    kind: CertificateKind
    subject: str
    not_after: dt.datetime
    ca_id: str | None = None
    devices: int = 0
    devices_lost: int = 0


def expiry_forecast(
    db: Database,
    project_id: str,
    *,
    now: dt.datetime,
    weeks: int = 52,
    server_chain: Sequence[x509.Certificate] = (),
) -> ExpiryForecast:
    """Count the project's enabled devices by the week they lose service.

    Week ``i`` covers ``[start + i weeks, start + (i + 1) weeks)``, where
    ``start`` is 00:00 UTC of the day of ``now``, so weeks read as whole
    days. A device whose certificates all outlast the last week counts in
    ``beyond``, one whose service already ended by ``now`` in ``expired``. ``server_chain`` is
    the server certificate chain and the root devices hold; every device
    depends on each of them. Raises NotFound for an unknown project.
    """
    if now.tzinfo is None:
        raise ValueError("cannot forecast: now must be an aware datetime (UTC)")
    if not 1 <= weeks <= MAX_WEEKS:
        raise InvalidInput(f"cannot forecast {weeks} weeks: expected 1 to {MAX_WEEKS}")

    tracked: dict[str, _Tracked] = {}
    for cert in server_chain:
        tracked[fingerprint(cert)] = _Tracked(
            "server", cert.subject.rfc4514_string(), cert.not_valid_after_utc
        )
    with db.session(read_only=True) as session:
        if session.get(Project, project_id) is None:
            raise NotFound(f"cannot find project {project_id!r}")
        for ca in session.scalars(
            select(CaCertificate).where(CaCertificate.project_id == project_id)
        ):
            tracked.setdefault(
                ca.fingerprint, _Tracked("ca", ca.subject, ca.not_after, ca.id)
            )
        rows = session.execute(
            select(Device.last_certificate_not_after, Device.ca_chain).where(
                Device.project_id == project_id,
                Device.enabled.is_(True),
                Device.last_certificate_not_after.is_not(None),
            )
        ).all()

    start = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    horizon = start + weeks * WEEK
    counts = [[0, 0, 0] for _ in range(weeks)]
    expired = beyond = 0
    server_fingerprints = [
        key for key, item in tracked.items() if item.kind == "server"
    ]
    for leaf_not_after, ca_chain in rows:
        depends = list(server_fingerprints)
        for entry in ca_chain or []:
            key = entry["fingerprint"]
            if key not in tracked:
                tracked[key] = _Tracked(
                    "ca", entry["subject"], dt.datetime.fromisoformat(entry["notAfter"])
                )
            depends.append(key)
        # The query selects only devices with a recorded expiry.
        assert leaf_not_after is not None
        lost_at: dt.datetime = leaf_not_after
        cause: str | None = None
        for key in dict.fromkeys(depends):
            item = tracked[key]
            item.devices += 1
            if item.not_after < lost_at:
                lost_at, cause = item.not_after, key
        if cause is not None:
            tracked[cause].devices_lost += 1

        if lost_at <= now:
            expired += 1
        elif lost_at >= horizon:
            beyond += 1
        else:
            week = int((lost_at - start) / WEEK)
            if cause is None:
                column = 0
            elif tracked[cause].kind == "ca":
                column = 1
            else:
                column = 2
            counts[week][column] += 1

    return ExpiryForecast(
        now=now,
        weeks=[
            WeekForecast(
                start=start + index * WEEK,
                end=start + (index + 1) * WEEK,
                devices=sum(count),
                by_device_certificate=count[0],
                by_ca=count[1],
                by_server=count[2],
            )
            for index, count in enumerate(counts)
        ],
        certificates=sorted(
            (
                CertificateForecast(
                    kind=item.kind,
                    subject=item.subject,
                    fingerprint=key,
                    not_after=item.not_after,
                    devices=item.devices,
                    devices_lost=item.devices_lost,
                    ca_id=item.ca_id,
                )
                for key, item in tracked.items()
            ),
            key=lambda item: (item.not_after, item.fingerprint),
        ),
        devices=len(rows),
        expired=expired,
        beyond=beyond,
    )


def load_server_chain(
    chain_path: Path, root_path: Path | None
) -> list[x509.Certificate]:
    """Read the server certificate chain and the root devices hold, once each."""
    chain = load_certificates(chain_path.read_bytes())
    if root_path is not None:
        chain += load_certificates(root_path.read_bytes())
    unique = {fingerprint(cert): cert for cert in chain}
    return list(unique.values())
