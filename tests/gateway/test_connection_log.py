"""The connection log and clone detection against the in-process gateway.

Devices are real DTLS clients; events reach the database through the
gateway's buffered writer, so each test waits for them to appear.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fleetgate import metrics
from fleetgate.api.app import create_app
from fleetgate.client import HandshakeRefused
from fleetgate.config import ConnectionLogSettings, GatewaySettings
from fleetgate.gateway import coap
from fleetgate.gateway.server_identity import ServerIdentity
from fleetgate.pki import tools
from fleetgate.store import apikeys, certificates, connections, devices, projects
from fleetgate.store.connections import ConnectionEvent
from fleetgate.store.database import Database
from fleetgate.store.models import ConnectionEventRow

from .conftest import PROJECT, FleetPki, GatewayFactory, GatewayThread, Issuer, connect

# Bounds every wait for the writer, in seconds.
WRITE_TIMEOUT = 5.0
FAST_LOG = ConnectionLogSettings(flush_interval=dt.timedelta(seconds=0.05))


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> GatewayThread:
    """A gateway that writes its connection log every 50 ms."""
    return start_gateway(connection_log=FAST_LOG)


def wait_for_events(
    db: Database,
    condition: Callable[[list[ConnectionEvent]], bool],
    *,
    project: str = PROJECT,
) -> list[ConnectionEvent]:
    """Poll the project's events until ``condition`` holds; return them."""
    deadline = time.monotonic() + WRITE_TIMEOUT
    while True:
        events = connections.list_events(db, project, limit=1000)
        if condition(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def results(events: list[ConnectionEvent]) -> list[tuple[str, str | None]]:
    return [(event.result, event.reason) for event in events]


def all_rows(db: Database) -> int:
    with db.session(read_only=True) as session:
        return session.scalar(select(func.count(ConnectionEventRow.id))) or 0


def handshakes(result: str, reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "fleetgate_handshakes_total", {"result": result, "reason": reason}
    )
    return value or 0.0


def test_accepted_and_refused_handshakes_are_logged(
    gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    stranger = Issuer(*tools.make_root("Unregistered Root"))
    with connect(gateway, pki.device("sensor-1")) as client:
        assert client.request("GET", ".d").code.dotted == "2.05"
        with pytest.raises(HandshakeRefused):
            connect(gateway, pki.device("sensor-2", issuer=stranger)).connect()

    events = wait_for_events(database, lambda found: len(found) >= 3)

    assert ("accepted", None) in results(events)
    assert ("rejected", "unknown_ca") in results(events)
    assert ("closed", "closed_by_peer") in results(events)
    accepted = next(e for e in events if e.result == "accepted")
    assert accepted.certificate_id == "sensor-1"
    assert accepted.device_id is not None
    assert accepted.peer.startswith("127.0.0.1:")
    assert accepted.fingerprint is not None and len(accepted.fingerprint) == 64


def test_events_are_queryable_by_reason_and_certificate(
    gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    stranger = Issuer(*tools.make_root("Unregistered Root"))
    with connect(gateway, pki.device("sensor-1")) as client:
        client.request("GET", ".d")
    with pytest.raises(HandshakeRefused):
        connect(gateway, pki.device("sensor-2", issuer=stranger)).connect()
    wait_for_events(database, lambda found: len(found) >= 3)

    by_reason = connections.list_events(database, PROJECT, reason="unknown_ca")
    by_certificate = connections.list_events(
        database, PROJECT, certificate_id="sensor-1"
    )

    assert [e.certificate_id for e in by_reason] == ["sensor-2"]
    assert {e.result for e in by_certificate} == {"accepted", "closed"}


def test_other_project_sees_no_events(
    gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    projects.create_project(database, "other-fleet")
    with connect(gateway, pki.device("sensor-1")) as client:
        client.request("GET", ".d")
    wait_for_events(database, lambda found: len(found) >= 2)

    assert connections.list_events(database, "other-fleet") == []


def test_unknown_project_gets_no_row(
    gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    before = handshakes("rejected", "unknown_project")

    with pytest.raises(HandshakeRefused):
        connect(gateway, pki.device("sensor-9", project="nowhere")).connect()

    # Rows written after the refusal show that the writer has run since.
    with connect(gateway, pki.device("sensor-1")) as client:
        client.request("GET", ".d")
    events = wait_for_events(database, lambda found: len(found) >= 2)

    assert handshakes("rejected", "unknown_project") == before + 1
    assert results(events) == [("closed", "closed_by_peer"), ("accepted", None)]
    assert all_rows(database) == 2


def test_handshake_counters_move(
    gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    accepted = handshakes("accepted", "none")
    refused = handshakes("rejected", "unknown_ca")
    stranger = Issuer(*tools.make_root("Unregistered Root"))

    with connect(gateway, pki.device("sensor-1")) as client:
        client.request("GET", ".d")
    with pytest.raises(HandshakeRefused):
        connect(gateway, pki.device("sensor-2", issuer=stranger)).connect()

    assert handshakes("accepted", "none") == accepted + 1
    assert handshakes("rejected", "unknown_ca") == refused + 1


def test_disabled_device_is_logged_as_rejected(
    gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    device = devices.create_device(database, PROJECT, "sensor-1")
    devices.update_device(database, PROJECT, device.id, enabled=False)

    with connect(gateway, pki.device("sensor-1")) as client:
        assert client.request("GET", ".d").code.dotted == "4.03"

    events = wait_for_events(database, lambda found: bool(found))
    assert results(events) == [("rejected", "device_disabled")]


class TestCloneDetection:
    def test_two_live_sessions_are_a_clone(
        self, gateway: GatewayThread, pki: FleetPki, database: Database
    ) -> None:
        device = pki.device("sensor-1")
        first = connect(gateway, device)
        second = connect(gateway, device)
        with first, second:
            first.request("GET", ".d")
            second.request("GET", ".d")
            # Past the grace period, both devices keep talking.
            time.sleep(2.2)
            first.request("GET", ".d")
            second.request("GET", ".d")
            first_port = first.channel.local_address[1]

            events = wait_for_events(
                database,
                lambda found: any(e.result == "clone_suspected" for e in found),
            )

        [clone] = [e for e in events if e.result == "clone_suspected"]
        assert clone.reason == "clone_suspected"
        assert clone.certificate_id == "sensor-1"
        assert {clone.peer, clone.other_peer} >= {f"127.0.0.1:{first_port}"}
        [suspect] = connections.clone_suspects(database, PROJECT)
        assert len(suspect.addresses) == 2

    def test_reconnect_from_new_port_is_no_clone(
        self, gateway: GatewayThread, pki: FleetPki, database: Database
    ) -> None:
        device = pki.device("sensor-1")
        old = connect(gateway, device)
        old.connect()
        old.request("GET", ".d")
        # The device loses its address without closing, as after NAT
        # rebinding: the old session stays until it idles out.
        old.channel.abort()

        with connect(gateway, device) as new:
            for _ in range(6):
                new.request("GET", ".d")
                time.sleep(0.5)
            assert gateway.session_count() == 2

        events = wait_for_events(
            database, lambda found: any(e.result == "closed" for e in found)
        )
        assert "clone_suspected" not in {e.result for e in events}
        assert connections.clone_suspects(database, PROJECT) == []


def test_sessions_gauge_counts_live_sessions(
    gateway: GatewayThread, pki: FleetPki
) -> None:
    with connect(gateway, pki.device("sensor-1")) as client:
        client.request("GET", ".d")
        live = metrics.REGISTRY.get_sample_value("fleetgate_sessions_active")

    assert live == 1


def test_idle_session_is_logged_as_idle_timeout(
    start_gateway: GatewayFactory, pki: FleetPki, database: Database
) -> None:
    gateway = start_gateway(
        connection_log=FAST_LOG, idle_timeout=dt.timedelta(seconds=1)
    )
    client = connect(gateway, pki.device("sensor-1"))
    client.connect()
    client.request("GET", ".d")

    events = wait_for_events(
        database, lambda found: any(e.result == "closed" for e in found)
    )
    client.channel.abort()

    assert results(events)[0] == ("closed", "idle_timeout")


def test_stop_writes_sessions_closed_by_the_server(
    database: Database, server_identity: ServerIdentity, pki: FleetPki
) -> None:
    # Written only by the final flush: the interval never comes.
    settings = GatewaySettings(
        host="127.0.0.1",
        port=0,
        connection_log=ConnectionLogSettings(flush_interval=dt.timedelta(hours=1)),
    )
    gateway = GatewayThread(database, server_identity, settings)
    client = connect(gateway, pki.device("sensor-1"))
    try:
        client.connect()
        client.request("GET", ".d")
    finally:
        gateway.stop()
        client.channel.abort()

    events = connections.list_events(database, PROJECT)

    assert results(events) == [("closed", "server_stopped"), ("accepted", None)]


def sessions_closed(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "fleetgate_sessions_closed_total", {"reason": reason}
    )
    return value or 0.0


class TestServerCloseReason:
    @pytest.fixture
    def api(
        self, database: Database, gateway: GatewayThread, pki: FleetPki
    ) -> Iterator[TestClient]:
        app = create_app(database, close_sessions=gateway.gateway.close_device_sessions)
        key = apikeys.create_api_key(database, PROJECT, actor="test")
        with TestClient(app, headers={"x-api-key": key.secret}) as client:
            yield client

    def closed_reason(self, db: Database) -> str | None:
        events = wait_for_events(
            db, lambda found: any(e.result == "closed" for e in found)
        )
        closed = [event for event in events if event.result == "closed"]
        assert len(closed) == 1, results(events)
        return closed[0].reason

    def test_quarantine_is_logged_as_quarantined(
        self, api: TestClient, gateway: GatewayThread, pki: FleetPki, database: Database
    ) -> None:
        before = sessions_closed("quarantined")
        (root,) = certificates.list_ca_certificates(database, PROJECT)
        with connect(gateway, pki.device("sensor-1")) as client:
            assert client.request("GET", ".d").successful
            started = api.post(
                f"/v1/projects/{PROJECT}/quarantines",
                json={"caFingerprint": root.fingerprint},
            )
            assert started.json()["data"]["sessionsClosed"] == 1

        assert self.closed_reason(database) == "quarantined"
        assert sessions_closed("quarantined") == before + 1

    def test_api_disable_is_logged_as_device_disabled(
        self, api: TestClient, gateway: GatewayThread, pki: FleetPki, database: Database
    ) -> None:
        with connect(gateway, pki.device("sensor-1")) as client:
            assert client.request("GET", ".d").successful
            (device,) = devices.list_devices(database, PROJECT).items
            api.patch(
                f"/v1/projects/{PROJECT}/devices/{device.id}", json={"enabled": False}
            )

        assert self.closed_reason(database) == "device_disabled"

    def test_recheck_of_disabled_ca_is_logged_as_ca_disabled(
        self,
        gateway: GatewayThread,
        pki: FleetPki,
        database: Database,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(coap, "REVALIDATE_SECONDS", 0.1)
        (root,) = certificates.list_ca_certificates(database, PROJECT)
        with connect(gateway, pki.device("sensor-1")) as client:
            assert client.request("GET", ".d").successful
            certificates.set_ca_certificate_enabled(database, PROJECT, root.id, False)
            gateway.gateway.trust.invalidate(PROJECT)
            time.sleep(0.3)
            assert client.request("GET", ".d").code.dotted == "4.03"

        assert self.closed_reason(database) == "ca_disabled"

    def test_new_handshake_is_logged_as_session_replaced(
        self, gateway: GatewayThread, pki: FleetPki, database: Database
    ) -> None:
        before = sessions_closed("session_replaced")
        old = connect(gateway, pki.device("sensor-1"))
        old.connect()
        assert old.request("GET", ".d").successful
        address = old.channel.local_address
        old.channel.abort()  # gone without close_notify, as after a reboot

        with connect(gateway, pki.device("sensor-1"), source_address=address) as new:
            assert new.request("GET", ".d").successful
            assert self.closed_reason(database) == "session_replaced"
        assert sessions_closed("session_replaced") == before + 1


def test_disabled_device_refusal_names_device(
    gateway: GatewayThread, pki: FleetPki, database: Database
) -> None:
    device = devices.create_device(database, PROJECT, "sensor-1")
    devices.update_device(database, PROJECT, device.id, enabled=False)

    with connect(gateway, pki.device("sensor-1")) as client:
        assert client.request("GET", ".d").code.dotted == "4.03"

    events = wait_for_events(database, lambda found: bool(found))
    by_reason = connections.list_events(database, PROJECT, reason="device_disabled")
    assert [event.device_id for event in events] == [device.id]
    assert [event.device_id for event in by_reason] == [device.id]
