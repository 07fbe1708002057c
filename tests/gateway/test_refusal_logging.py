"""Refused handshakes and device requests are logged with a reason."""

from __future__ import annotations

import contextlib
import logging
import time

import pytest
from OpenSSL import SSL

from fleetgate import metrics
from fleetgate.client import JSON
from fleetgate.gateway.refusals import DEFAULT_LINES_PER_MINUTE

from .conftest import PROJECT, FleetPki, GatewayThread, connect
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


def refused_count(code: str, reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "fleetgate_coap_requests_refused_total", {"code": code, "reason": reason}
    )
    return value or 0.0


def test_refused_request_is_logged_and_counted(
    gateway: GatewayThread, pki: FleetPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetgate.gateway.refusals")
    before = refused_count("4.00", "invalid_input")
    with connect(gateway, pki.device("sensor-1")) as client:
        reply = client.request("POST", "logs", b"[1]", content_format=JSON)

    lines = [r.getMessage() for r in caplog.records]
    assert reply.code.dotted == "4.00"
    assert len(lines) == 1
    assert f"project={PROJECT} " in lines[0]
    assert "method=POST path='/logs' code=4.00 reason=invalid_input" in lines[0]
    assert "must be a map" in lines[0]
    assert refused_count("4.00", "invalid_input") == before + 1


def test_refused_not_found_is_debug(
    gateway: GatewayThread, pki: FleetPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fleetgate.gateway.refusals")
    with connect(gateway, pki.device("sensor-1")) as client:
        reply = client.request("GET", ".d/absent")

    refusals = [r for r in caplog.records if "code=4.04" in r.getMessage()]
    assert reply.code.dotted == "4.04"
    assert len(refusals) == 1
    assert refusals[0].levelno == logging.DEBUG


def test_repeated_refusals_are_summarised(
    gateway: GatewayThread, pki: FleetPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetgate.gateway")
    with connect(gateway, pki.device("sensor-1")) as client:
        for _ in range(DEFAULT_LINES_PER_MINUTE + 5):
            client.request("POST", "logs", b"[1]", content_format=JSON)

    messages = [r.getMessage() for r in caplog.records]
    logged = [m for m in messages if m.startswith("device request refused")]
    summaries = [m for m in messages if m.startswith("refused requests not logged")]
    assert len(logged) == DEFAULT_LINES_PER_MINUTE
    assert len(summaries) == 1
    assert "dropped=1 " in summaries[0]
