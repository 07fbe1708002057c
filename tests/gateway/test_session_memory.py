"""Sessions release their OpenSSL connections as soon as they can.

An established session runs its own record layer and frees OpenSSL at
the end of the handshake. A stalled handshake frees it when it times
out. The cycle collector does not see OpenSSL's native memory, so a
connection kept alive by a reference cycle until the next full
collection would hold tens of kilobytes in the meantime.
"""

from __future__ import annotations

import datetime as dt
import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from fleetgate.gateway.dtls import DtlsSession, SessionState

from .conftest import FleetPki, GatewayFactory, connect
from .peers import PartialHandshake


@pytest.fixture
def no_cycle_collection() -> Iterator[None]:
    """Disable the cycle collector so only reference counting frees memory."""
    was_enabled = gc.isenabled()
    gc.disable()
    yield
    if was_enabled:
        gc.enable()


def wait_for_release(reference: weakref.ref[object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reference() is None:
            return True
        time.sleep(0.05)
    return reference() is None


def test_stalled_handshake_frees_connection(
    start_gateway: GatewayFactory, no_cycle_collection: None
) -> None:
    gateway = start_gateway(handshake_timeout=dt.timedelta(seconds=0.5))
    peer = PartialHandshake(gateway.port)
    try:
        peer.open_session()
        sessions: list[DtlsSession] = gateway.call(
            lambda: list(gateway.listener.sessions.values())
        )
        assert len(sessions) == 1
        connection = weakref.ref(sessions[0].connection)
        del sessions

        assert wait_for_release(connection, timeout=4.0)
    finally:
        peer.close()


def test_established_session_frees_connection(
    start_gateway: GatewayFactory, pki: FleetPki, no_cycle_collection: None
) -> None:
    gateway = start_gateway()
    device = pki.device("sensor-1")
    peer = PartialHandshake(gateway.port, certificate=device.cert, key=device.key)
    try:
        peer.open_session()
        sessions: list[DtlsSession] = gateway.call(
            lambda: list(gateway.listener.sessions.values())
        )
        connection = weakref.ref(sessions[0].connection)

        peer.finish()

        assert wait_for_release(connection, timeout=4.0)
        assert gateway.call(lambda: sessions[0].state) is SessionState.ESTABLISHED
    finally:
        peer.close()


def test_closed_session_is_removed(
    start_gateway: GatewayFactory, pki: FleetPki, no_cycle_collection: None
) -> None:
    gateway = start_gateway()
    client = connect(gateway, pki.device("sensor-1"))
    client.connect()
    assert client.request("GET", ".d").code.dotted == "2.05"
    sessions: list[DtlsSession] = gateway.call(
        lambda: list(gateway.listener.sessions.values())
    )
    session = weakref.ref(sessions[0])
    del sessions

    client.close()

    assert wait_for_release(session, timeout=4.0)
