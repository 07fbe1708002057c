"""A disabled or deleted device that only observes gets no more data.

Such a device sends no request, so its session must end from the API's
close hook at once, or from the periodic recheck when the change was
made outside the serving process (by the command line, say).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from fastapi.testclient import TestClient

from fleetgate.api.app import create_app
from fleetgate.client import JSON, DeviceClient
from fleetgate.client.errors import SessionClosed
from fleetgate.gateway import coap
from fleetgate.store import apikeys, certificates, devices
from fleetgate.store import state as state_store
from fleetgate.store.database import Database

from .conftest import FleetPki, GatewayThread, connect

TOKEN = b"\x0b\x5e"
RECHECK_SECONDS = 0.2
# Well below the default recheck interval of 5 s, so that only the API's
# close hook can end the session this fast.
PROMPT_SECONDS = 2.0


@pytest.fixture
def observer(gateway: GatewayThread, pki: FleetPki) -> Iterator[DeviceClient]:
    """A connected device observing ``.d/sensor``."""
    client = connect(gateway, pki.device("sensor-1"))
    with client:
        message = Message(code=Code.GET)
        message.mtype = Type.CON
        message.mid = 1
        message.token = TOKEN
        message.opt.uri_path = (".d", "sensor")
        message.opt.observe = 0
        message.opt.accept = JSON
        client.channel.send(message.encode())
        record = client.channel.receive(3.0)
        assert record is not None
        assert Message.decode(record).opt.observe is not None
        yield client


@pytest.fixture
def api(
    database: Database, gateway: GatewayThread, pki: FleetPki
) -> Iterator[TestClient]:
    app = create_app(database, close_sessions=gateway.gateway.close_device_sessions)
    key = apikeys.create_api_key(database, pki.project, actor="test")
    with TestClient(app, headers={"x-api-key": key.secret}) as client:
        yield client


def only_device_id(db: Database, project: str) -> str:
    (device,) = devices.list_devices(db, project).items
    return device.id


def receive_until_closed(
    client: DeviceClient, seconds: float
) -> tuple[list[Message], str | None]:
    """Return the messages received, and the alert that ended the session.

    The alert is None when the session was still open after ``seconds``.
    """
    received: list[Message] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            record = client.channel.receive(remaining)
        except SessionClosed as closed:
            return received, closed.alert
        if record is not None:
            received.append(Message.decode(record))
    return received, None


def test_recheck_ends_observing_session(
    observer: DeviceClient,
    database: Database,
    pki: FleetPki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(coap, "REVALIDATE_SECONDS", RECHECK_SECONDS)
    device_id = only_device_id(database, pki.project)

    # Written to the store as the command line does, with no API hook.
    devices.set_device_enabled(database, pki.project, device_id, False)
    time.sleep(RECHECK_SECONDS * 4)
    state_store.set_state(database, device_id, ("sensor",), 21)
    received, alert = receive_until_closed(observer, PROMPT_SECONDS)

    assert received == []
    assert alert == "close_notify"


def test_overdue_recheck_runs_before_notification(
    observer: DeviceClient,
    database: Database,
    pki: FleetPki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The periodic sweep waits far longer than the test, so only the
    # check before each notification can find the device disabled.
    monkeypatch.setattr(coap, "REVALIDATE_SECONDS", RECHECK_SECONDS)
    monkeypatch.setattr(coap, "RECHECK_SWEEPS_PER_INTERVAL", 0.001)
    device_id = only_device_id(database, pki.project)

    devices.set_device_enabled(database, pki.project, device_id, False)
    time.sleep(RECHECK_SECONDS * 2)
    state_store.set_state(database, device_id, ("sensor",), 21)
    received, alert = receive_until_closed(observer, PROMPT_SECONDS)

    assert received == []
    assert alert == "close_notify"


def test_enabled_observer_keeps_notifications(
    observer: DeviceClient,
    database: Database,
    pki: FleetPki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(coap, "REVALIDATE_SECONDS", RECHECK_SECONDS)
    time.sleep(RECHECK_SECONDS * 4)

    state_store.set_state(
        database, only_device_id(database, pki.project), ("sensor",), 21
    )
    received, alert = receive_until_closed(observer, 1.0)

    assert [message.payload for message in received] == [b"21"]
    assert alert is None


def test_api_disable_closes_observing_session(
    observer: DeviceClient, api: TestClient, database: Database, pki: FleetPki
) -> None:
    device_id = only_device_id(database, pki.project)

    response = api.patch(
        f"/v1/projects/{pki.project}/devices/{device_id}", json={"enabled": False}
    )
    received, alert = receive_until_closed(observer, PROMPT_SECONDS)

    assert response.status_code == 200, response.text
    assert received == []
    assert alert == "close_notify"


def test_api_rename_keeps_observing_session(
    observer: DeviceClient, api: TestClient, database: Database, pki: FleetPki
) -> None:
    device_id = only_device_id(database, pki.project)

    response = api.patch(
        f"/v1/projects/{pki.project}/devices/{device_id}", json={"name": "renamed"}
    )
    _, alert = receive_until_closed(observer, 0.5)

    assert response.status_code == 200, response.text
    assert alert is None


def test_api_delete_closes_observing_session(
    observer: DeviceClient, api: TestClient, database: Database, pki: FleetPki
) -> None:
    device_id = only_device_id(database, pki.project)

    response = api.delete(f"/v1/projects/{pki.project}/devices/{device_id}")
    _, alert = receive_until_closed(observer, PROMPT_SECONDS)

    assert response.status_code == 200, response.text
    assert alert == "close_notify"


@pytest.mark.parametrize("method", ["disable", "delete"])
def test_api_ca_change_closes_observing_session(
    observer: DeviceClient,
    api: TestClient,
    database: Database,
    pki: FleetPki,
    method: str,
) -> None:
    (root,) = certificates.list_ca_certificates(database, pki.project)
    path = f"/v1/projects/{pki.project}/certificates/{root.id}"

    if method == "disable":
        response = api.patch(path, json={"enabled": False})
    else:
        response = api.delete(path)
    _, alert = receive_until_closed(observer, PROMPT_SECONDS)

    assert response.status_code == 200, response.text
    assert alert == "close_notify"
