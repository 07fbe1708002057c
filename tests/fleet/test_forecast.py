"""The expiry forecast counts devices by the week their first certificate ends."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fleetgate import provisioning
from fleetgate.api.app import create_app
from fleetgate.cli.main import app as cli
from fleetgate.errors import InvalidInput, NotFound
from fleetgate.forecast import WEEK, expiry_forecast
from fleetgate.pki import tools
from fleetgate.pki.identity import fingerprint
from fleetgate.store import apikeys, devices
from fleetgate.store.database import Database

from .pki import PROJECT, ProjectPki


class Fleet:
    """Devices whose first expiry is their own, an intermediate, the server."""

    def __init__(self, db: Database) -> None:
        self.now = dt.datetime.now(dt.UTC)
        self.pki = ProjectPki(db, intermediate_days=100)
        _, self.server_root = tools.make_root("Server Root", days=200)
        self.leaves: dict[str, x509.Certificate] = {}
        self.add("own-30", via_intermediate=True, days=30)
        self.add("ca-100", via_intermediate=True, days=365)
        self.add("server-200", via_intermediate=False, days=400)
        self.add("later", via_intermediate=False, days=399)
        long_ago = self.now - dt.timedelta(days=60)
        self.add("expired", via_intermediate=False, days=30, not_before=long_ago)
        disabled = self.add("disabled", via_intermediate=False, days=10)
        devices.set_device_enabled(db, PROJECT, disabled, False)

    def add(
        self,
        name: str,
        *,
        via_intermediate: bool,
        days: int,
        not_before: dt.datetime | None = None,
    ) -> str:
        chain = self.pki.device(
            name, via_intermediate=via_intermediate, days=days, not_before=not_before
        )
        self.leaves[name] = chain[0]
        cas = (
            [self.pki.intermediate, self.pki.root]
            if via_intermediate
            else [self.pki.root]
        )
        return provisioning.associate(
            self.pki.db,
            project_id=PROJECT,
            certificate_id=name,
            fingerprint=fingerprint(chain[0]),
            not_after=chain[0].not_valid_after_utc,
            ca_chain=provisioning.chain_cas(cas, [fingerprint(ca) for ca in cas]),
        ).device_id

    def week_of(self, cert: x509.Certificate) -> int:
        midnight = self.now.replace(hour=0, minute=0, second=0, microsecond=0)
        return int((cert.not_valid_after_utc - midnight) / WEEK)


@pytest.fixture
def fleet(database: Database) -> Fleet:
    return Fleet(database)


def _forecast(fleet: Fleet, **options: object):  # type: ignore[no-untyped-def]
    return expiry_forecast(
        fleet.pki.db,
        PROJECT,
        now=fleet.now,
        server_chain=[fleet.server_root],
        **options,  # type: ignore[arg-type]
    )


def test_devices_land_in_the_week_of_first_expiry(fleet: Fleet) -> None:
    result = _forecast(fleet)

    own = result.weeks[fleet.week_of(fleet.leaves["own-30"])]
    by_ca = result.weeks[fleet.week_of(fleet.pki.intermediate)]
    by_server = result.weeks[fleet.week_of(fleet.server_root)]

    assert (own.devices, own.by_device_certificate) == (1, 1)
    assert (by_ca.devices, by_ca.by_ca) == (1, 1)
    assert (by_server.devices, by_server.by_server) == (2, 2)
    assert sum(week.devices for week in result.weeks) == 4


def test_week_start_matches_certificate_date(fleet: Fleet) -> None:
    result = _forecast(fleet)
    week = result.weeks[fleet.week_of(fleet.pki.intermediate)]

    assert week.start <= fleet.pki.intermediate.not_valid_after_utc < week.end


def test_weeks_start_at_midnight_utc(fleet: Fleet) -> None:
    evening = dt.datetime(2027, 1, 1, 19, 30, tzinfo=dt.UTC)

    result = expiry_forecast(fleet.pki.db, PROJECT, now=evening, weeks=2)

    assert result.weeks[0].start == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert result.weeks[1].start == dt.datetime(2027, 1, 8, tzinfo=dt.UTC)


def test_expired_and_disabled_devices(fleet: Fleet) -> None:
    result = _forecast(fleet)

    assert result.devices == 5
    assert result.expired == 1
    assert result.beyond == 0


def test_certificates_count_dependent_devices(fleet: Fleet) -> None:
    result = _forecast(fleet)
    by_fingerprint = {item.fingerprint: item for item in result.certificates}

    intermediate = by_fingerprint[fingerprint(fleet.pki.intermediate)]
    server = by_fingerprint[fingerprint(fleet.server_root)]
    root = by_fingerprint[fingerprint(fleet.pki.root)]

    assert (intermediate.kind, intermediate.devices, intermediate.devices_lost) == (
        "ca",
        2,
        1,
    )
    assert intermediate.ca_id is None
    assert intermediate.not_after == fleet.pki.intermediate.not_valid_after_utc
    assert (server.kind, server.devices, server.devices_lost) == ("server", 5, 2)
    assert (root.ca_id, root.devices, root.devices_lost) == (
        fleet.pki.root_record.id,
        5,
        0,
    )


def test_without_server_chain_devices_last_beyond(fleet: Fleet) -> None:
    result = expiry_forecast(fleet.pki.db, PROJECT, now=fleet.now)

    assert result.beyond == 2


def test_short_horizon_counts_rest_beyond(fleet: Fleet) -> None:
    result = _forecast(fleet, weeks=8)

    assert len(result.weeks) == 8
    assert sum(week.devices for week in result.weeks) == 1
    assert result.beyond == 3


def test_weeks_out_of_range_is_invalid(fleet: Fleet) -> None:
    with pytest.raises(InvalidInput):
        _forecast(fleet, weeks=0)


def test_unknown_project_is_not_found(database: Database) -> None:
    with pytest.raises(NotFound):
        expiry_forecast(database, "none", now=dt.datetime.now(dt.UTC))


def test_api_returns_json_with_server_chain(fleet: Fleet) -> None:
    app = create_app(fleet.pki.db, server_chain=[fleet.server_root])
    key = apikeys.create_api_key(fleet.pki.db, PROJECT, actor="test")
    with TestClient(app, headers={"x-api-key": key.secret}) as client:
        response = client.get(f"/v1/projects/{PROJECT}/forecast?weeks=52")
        other = client.get("/v1/projects/other/forecast")

    body = response.json()["data"]
    assert response.status_code == 200
    assert len(body["weeks"]) == 52
    assert sum(week["byServer"] for week in body["weeks"]) == 2
    assert other.status_code == 404


def test_cli_prints_weeks_and_certificates(
    fleet: Fleet, database_url: str, tmp_path: Path
) -> None:
    chain = tmp_path / "server-chain.pem"
    chain.write_bytes(fleet.server_root.public_bytes(Encoding.PEM))
    common = [
        "-p",
        PROJECT,
        "--server-chain",
        str(chain),
        "--database-url",
        database_url,
    ]

    table = CliRunner().invoke(cli, ["forecast", *common], catch_exceptions=False)
    as_json = CliRunner().invoke(cli, ["forecast", *common, "--json"])

    assert table.exit_code == 0, table.output
    assert "Server Root" in table.stdout
    assert "5 devices: 1 already without service, 4 within 52 weeks" in table.stdout
    assert json.loads(as_json.stdout)["expired"] == 1
