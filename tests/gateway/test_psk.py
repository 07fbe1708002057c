"""PSK handshakes on the certificate port, with the reference client."""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest

from fleetgate.client import (
    DeviceClient,
    HandshakeFailed,
    HandshakeRefused,
    PskCredentials,
)
from fleetgate.config import ConnectionLogSettings
from fleetgate.gateway import coap
from fleetgate.store import connections, devices, projects, psk
from fleetgate.store.database import Database
from fleetgate.store.sealing import KeyEncryptionKey

from .conftest import (
    FAST_TRANSMISSION,
    PROJECT,
    FleetPki,
    GatewayFactory,
    GatewayThread,
    connect,
)

KEY = b"an-example-key-of-32-characters!"


def psk_client(
    gateway: GatewayThread, identity: str, key: bytes, **options: object
) -> DeviceClient:
    return DeviceClient(
        "127.0.0.1",
        gateway.port,
        psk=PskCredentials(identity, key),
        timeout=3.0,
        transmission=FAST_TRANSMISSION,
        **options,  # type: ignore[arg-type]
    )


def add_credential(
    database: Database,
    psk_key: KeyEncryptionKey,
    name: str = "sensor-psk",
    *,
    gateway: GatewayThread | None = None,
    project: str = PROJECT,
    identity: str | None = None,
    key: bytes = KEY,
) -> psk.IssuedPskCredential:
    try:
        device = devices.find_device(database, project, name)
    except LookupError:
        device = devices.create_device(database, project, name)
    issued = psk.create_psk_credential(
        database,
        psk_key,
        project,
        device.id,
        identity=identity or f"{name}@{project}",
        key=key,
    )
    if gateway is not None:
        # What the management API does after each change.
        gateway.gateway.psk.reload_project(project)
    return issued


def refusal_logged(
    caplog: pytest.LogCaptureFixture, *fields: str, timeout: float = 3.0
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in caplog.records:
            message = record.getMessage()
            if record.levelno == logging.WARNING and all(f in message for f in fields):
                return True
        time.sleep(0.05)
    return False


@pytest.fixture
def psk_gateway(start_gateway: GatewayFactory, pki: FleetPki) -> GatewayThread:
    # pki creates the project and a root, so certificate devices work too.
    return start_gateway()


@pytest.mark.parametrize(
    "cipher",
    [
        pytest.param("PSK-AES128-CCM8", id="ok/ccm8"),
        pytest.param("PSK-AES128-GCM-SHA256", id="ok/gcm"),
        pytest.param("PSK-AES128-CCM", id="ok/ccm"),
        pytest.param("PSK-AES128-CBC-SHA256", id="ok/cbc"),
    ],
)
def test_psk_device_is_served(
    psk_gateway: GatewayThread,
    database: Database,
    psk_key: KeyEncryptionKey,
    cipher: str,
) -> None:
    add_credential(database, psk_key, gateway=psk_gateway)
    client = psk_client(
        psk_gateway, f"sensor-psk@{PROJECT}", KEY, ciphers=f"{cipher}:@SECLEVEL=0"
    )

    with client:
        written = client.request("POST", ".d/temp", b"21", content_format=50)
        read = client.request("GET", ".d/temp")
        negotiated = client.cipher

    assert negotiated == cipher
    assert written.code.dotted == "2.04"
    assert read.payload == b"21"


def test_psk_and_certificate_devices_share_the_port(
    psk_gateway: GatewayThread,
    database: Database,
    psk_key: KeyEncryptionKey,
    pki: FleetPki,
) -> None:
    add_credential(database, psk_key, gateway=psk_gateway)
    certificate_device = connect(psk_gateway, pki.device("sensor-cert"))
    psk_device = psk_client(psk_gateway, f"sensor-psk@{PROJECT}", KEY)

    with certificate_device, psk_device:
        certificate_reply = certificate_device.request("POST", ".d/a", b"1")
        psk_reply = psk_device.request("POST", ".d/b", b"2")
        certificate_cipher = certificate_device.cipher
        psk_cipher = psk_device.cipher

    assert certificate_reply.code.dotted == "2.04"
    assert psk_reply.code.dotted == "2.04"
    assert certificate_cipher is not None and "ECDSA" in certificate_cipher
    assert psk_cipher is not None and psk_cipher.startswith("PSK-")


def test_psk_device_state_lands_on_its_record(
    psk_gateway: GatewayThread, database: Database, psk_key: KeyEncryptionKey
) -> None:
    issued = add_credential(database, psk_key, gateway=psk_gateway)

    with psk_client(psk_gateway, f"sensor-psk@{PROJECT}", KEY) as client:
        client.request("POST", ".d/temp", b"7", content_format=50)

    record = devices.get_device(database, PROJECT, issued.record.device_id)
    assert record.last_seen_at is not None
    used = psk.get_psk_credential(database, PROJECT, issued.record.id)
    assert used.last_used_at is not None


def test_unknown_identity_is_refused_and_logged(
    psk_gateway: GatewayThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fleetgate")
    client = psk_client(psk_gateway, f"nobody@{PROJECT}", KEY)

    with pytest.raises(HandshakeRefused) as refused:
        client.connect()

    assert refused.value.alert == "unknown_psk_identity"
    assert refusal_logged(
        caplog, f"project={PROJECT}", "psk_id=nobody", "reason=unknown_psk_identity"
    )


def test_malformed_identity_is_refused_and_logged(
    psk_gateway: GatewayThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fleetgate")
    client = psk_client(psk_gateway, "no-project-here", KEY)

    with pytest.raises(HandshakeRefused):
        client.connect()

    assert refusal_logged(
        caplog, "project=-", "psk_id=no-project-here", "reason=invalid_psk_identity"
    )


def test_identity_of_another_project_is_refused(
    psk_gateway: GatewayThread,
    database: Database,
    psk_key: KeyEncryptionKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="fleetgate")
    projects.create_project(database, "other-fleet")
    add_credential(
        database, psk_key, "twin", project="other-fleet", gateway=psk_gateway
    )
    # The same psk-id and key, but naming the project it does not belong to.
    client = psk_client(psk_gateway, f"twin@{PROJECT}", KEY)

    with pytest.raises(HandshakeRefused):
        client.connect()

    assert refusal_logged(
        caplog, f"project={PROJECT}", "psk_id=twin", "reason=unknown_psk_identity"
    )


def test_wrong_key_is_refused_and_logged(
    psk_gateway: GatewayThread,
    database: Database,
    psk_key: KeyEncryptionKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="fleetgate")
    add_credential(database, psk_key, gateway=psk_gateway)
    client = psk_client(psk_gateway, f"sensor-psk@{PROJECT}", b"x" * 32)

    with pytest.raises(HandshakeFailed):
        client.connect()

    assert refusal_logged(
        caplog, f"project={PROJECT}", "psk_id=sensor-psk", "reason=psk_mismatch"
    )
    assert psk_gateway.session_count() == 0


def test_disabled_device_gets_forbidden(
    psk_gateway: GatewayThread,
    database: Database,
    psk_key: KeyEncryptionKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="fleetgate")
    issued = add_credential(database, psk_key, gateway=psk_gateway)
    devices.set_device_enabled(database, PROJECT, issued.record.device_id, False)

    with psk_client(psk_gateway, f"sensor-psk@{PROJECT}", KEY) as client:
        reply = client.request("GET", ".d")

    assert reply.code.dotted == "4.03"
    assert refusal_logged(
        caplog, f"project={PROJECT}", "psk_id=sensor-psk", "reason=device_disabled"
    )


def test_deleted_credential_stops_new_handshakes(
    psk_gateway: GatewayThread, database: Database, psk_key: KeyEncryptionKey
) -> None:
    issued = add_credential(database, psk_key, gateway=psk_gateway)
    with psk_client(psk_gateway, f"sensor-psk@{PROJECT}", KEY) as client:
        assert client.request("GET", ".d").code.dotted == "2.05"

    psk.delete_psk_credential(database, PROJECT, issued.record.id)
    psk_gateway.gateway.psk.reload_project(PROJECT)

    with pytest.raises(HandshakeRefused):
        psk_client(psk_gateway, f"sensor-psk@{PROJECT}", KEY).connect()


def test_deleted_credential_ends_open_session(
    psk_gateway: GatewayThread,
    database: Database,
    psk_key: KeyEncryptionKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(coap, "REVALIDATE_SECONDS", 0.2)
    issued = add_credential(database, psk_key, gateway=psk_gateway)

    with psk_client(psk_gateway, f"sensor-psk@{PROJECT}", KEY) as client:
        assert client.request("GET", ".d").code.dotted == "2.05"
        psk.delete_psk_credential(database, PROJECT, issued.record.id)
        psk_gateway.gateway.psk.reload_project(PROJECT)
        time.sleep(0.3)
        reply = client.request("GET", ".d")

    assert reply.code.dotted == "4.03"


def test_credential_added_elsewhere_is_picked_up(
    psk_gateway: GatewayThread, database: Database, psk_key: KeyEncryptionKey
) -> None:
    # No reload call: the gateway's periodic refresh must find it.
    add_credential(database, psk_key)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            with psk_client(psk_gateway, f"sensor-psk@{PROJECT}", KEY) as client:
                assert client.request("GET", ".d").code.dotted == "2.05"
                return
        except HandshakeRefused:
            time.sleep(0.3)
    pytest.fail("the credential was not picked up within 5 seconds")


def test_refusals_reach_connection_log(
    start_gateway: GatewayFactory,
    pki: FleetPki,
    database: Database,
    psk_key: KeyEncryptionKey,
) -> None:
    fast_log = ConnectionLogSettings(flush_interval=dt.timedelta(seconds=0.05))
    gateway = start_gateway(connection_log=fast_log)
    add_credential(database, psk_key, gateway=gateway)

    with pytest.raises(HandshakeFailed):
        psk_client(gateway, f"sensor-psk@{PROJECT}", b"x" * 32).connect()
    with pytest.raises(HandshakeRefused):
        psk_client(gateway, f"nobody@{PROJECT}", KEY).connect()
    with psk_client(gateway, f"sensor-psk@{PROJECT}", KEY) as client:
        client.request("GET", ".d")

    deadline = time.monotonic() + 5.0
    found: set[tuple[str, str | None]] = set()
    while time.monotonic() < deadline and len(found) < 3:
        events = connections.list_events(database, PROJECT, limit=100)
        found = {(event.result, event.reason) for event in events}
        time.sleep(0.05)
    assert ("rejected", "psk_mismatch") in found
    assert ("rejected", "unknown_psk_identity") in found
    assert ("accepted", None) in found
