"""Handshakes turned away outside chain verification are logged with a reason."""

from __future__ import annotations

import contextlib
import logging
import time

import pytest
from OpenSSL import SSL

from .conftest import FleetPki, GatewayThread, connect
from .peers import PartialHandshake

# Flights of a full DTLS 1.2 handshake plus the cookie round, with margin.
MAX_FLIGHTS = 8


def handshake_without_certificate(port: int) -> str:
    """Run a client handshake that offers no certificate; return its failure."""
    peer = PartialHandshake(port)
    peer.socket.settimeout(2.0)
    try:
        for _ in range(MAX_FLIGHTS):
            try:
                peer.connection.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as exc:
                return str(exc)
            flight = b""
            with contextlib.suppress(SSL.WantReadError):
                flight = peer.connection.bio_read(65535)
            if flight:
                peer.socket.send(flight)
            try:
                peer.connection.bio_write(peer.socket.recv(65535))
            except TimeoutError:
                return "timed out"
        return "no failure"
    finally:
        peer.close()


def wait_for_record(
    caplog: pytest.LogCaptureFixture, text: str, timeout: float = 3.0
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in record.getMessage() for record in caplog.records):
            return True
        time.sleep(0.05)
    return False


def test_missing_client_certificate_is_logged(
    gateway: GatewayThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fleetgate")

    failure = handshake_without_certificate(gateway.port)

    assert "handshake failure" in failure
    assert wait_for_record(caplog, "reason=no_client_certificate")


def test_empty_datagram_is_ignored(
    gateway: GatewayThread, pki: FleetPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = connect(gateway, pki.device("sensor-1"))
    with client:
        assert client.request("GET", ".d").code.dotted == "2.05"

        address = gateway.call(lambda: next(iter(gateway.listener.sessions)))
        gateway.call(lambda: gateway.listener.datagram_received(b"", address))

        assert client.request("GET", ".d").code.dotted == "2.05"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
