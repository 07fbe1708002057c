"""The reference device client: server checks, failures and retransmission.

The happy paths run in the gateway tests; these cover what the client
decides on its own side.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetgate.client import (
    ChannelState,
    CredentialsError,
    DeviceClient,
    HandshakeTimeout,
    RequestTimeout,
    ServerNotTrusted,
    ServerUnreachable,
    TransmissionParameters,
)
from fleetgate.pki import tools
from gateway.conftest import FleetPki, GatewayThread, connect
from gateway.peers import UdpRelay, is_application_data, receive_all


@pytest.fixture
def silent_port() -> Iterator[socket.socket]:
    """A bound UDP socket that never replies."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def closed_port() -> int:
    """Return a UDP port on loopback that nothing listens on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


class TestServerVerification:
    def test_other_ca_is_not_trusted(
        self, gateway: GatewayThread, pki: FleetPki, tmp_path: Path
    ) -> None:
        wrong_ca = tmp_path / "wrong-ca.pem"
        tools.write_certificate(wrong_ca, pki.root.certificate)
        device = pki.device("sensor-1")
        client = DeviceClient(
            "127.0.0.1", gateway.port, device.cert, device.key, wrong_ca, timeout=3
        )

        with pytest.raises(ServerNotTrusted) as rejected:
            client.connect()

        assert "local issuer" in rejected.value.reason
        assert rejected.value.depth == 0
        assert client.state is ChannelState.CLOSED

    def test_wrong_server_name_is_not_trusted(
        self, gateway: GatewayThread, pki: FleetPki
    ) -> None:
        client = connect(
            gateway, pki.device("sensor-1"), server_hostname="gw.example.com"
        )

        with pytest.raises(ServerNotTrusted) as rejected:
            client.connect()

        assert rejected.value.reason == "it does not name gw.example.com"

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param("localhost", id="ok/dns"),
            pytest.param("LocalHost", id="ok/dns-case"),
            pytest.param("::1", id="ok/ipv6-entry"),
        ],
    )
    def test_matching_server_name_is_trusted(
        self, gateway: GatewayThread, pki: FleetPki, name: str
    ) -> None:
        with connect(gateway, pki.device("sensor-1"), server_hostname=name) as client:
            assert client.state is ChannelState.ESTABLISHED


class TestFailures:
    def test_closed_port_is_unreachable(self, pki: FleetPki, tmp_path: Path) -> None:
        device = pki.device("sensor-1")
        ca = tmp_path / "ca.pem"
        tools.write_certificate(ca, pki.root.certificate)
        client = DeviceClient(
            "127.0.0.1", closed_port(), device.cert, device.key, ca, timeout=3
        )

        with pytest.raises(ServerUnreachable):
            client.connect()

    def test_silent_server_times_out(
        self, pki: FleetPki, silent_port: socket.socket, tmp_path: Path
    ) -> None:
        device = pki.device("sensor-1")
        ca = tmp_path / "ca.pem"
        tools.write_certificate(ca, pki.root.certificate)
        port = int(silent_port.getsockname()[1])
        client = DeviceClient(
            "127.0.0.1", port, device.cert, device.key, ca, timeout=1.5
        )

        started = time.monotonic()
        with pytest.raises(HandshakeTimeout):
            client.connect()
        elapsed = time.monotonic() - started

        # OpenSSL's first retransmission timer is one second.
        hellos = receive_all(silent_port, 0.0)
        assert len(hellos) == 2
        # The same handshake message in a record with the next sequence
        # number (RFC 6347 4.1).
        header = 13
        assert hellos[0][header:] == hellos[1][header:]
        assert 1.4 < elapsed < 2.5

    def test_request_stops_at_max_retransmit(
        self, gateway: GatewayThread, pki: FleetPki
    ) -> None:
        relay = UdpRelay(gateway.port)
        timing = TransmissionParameters(ack_timeout=0.1, max_retransmit=2)
        client = connect(
            gateway,
            pki.device("sensor-1"),
            port=relay.port,
            timeout=10,
            transmission=timing,
        )
        try:
            with client:
                sent_before = len(relay.to_server)
                relay.drop_to_server = lambda index, _: True
                with pytest.raises(RequestTimeout) as timed_out:
                    client.request("GET", ".d")
                transmissions = [
                    datagram
                    for datagram in relay.to_server[sent_before:]
                    if is_application_data(datagram)
                ]
        finally:
            relay.close()

        assert len(transmissions) == 3
        assert "after 2 retransmissions" in str(timed_out.value)

    def test_close_ends_server_session(
        self, gateway: GatewayThread, pki: FleetPki
    ) -> None:
        with connect(gateway, pki.device("sensor-1")) as client:
            assert gateway.session_count() == 1

        deadline = time.monotonic() + 2
        while gateway.session_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gateway.session_count() == 0
        assert client.state is ChannelState.CLOSED
        client.close()  # a second close does nothing


class TestArguments:
    def test_key_of_other_device_is_rejected(self, pki: FleetPki) -> None:
        first, second = pki.device("sensor-1"), pki.device("sensor-2")

        with pytest.raises(CredentialsError, match="does not match"):
            DeviceClient("127.0.0.1", 5684, first.cert, second.key, first.cert)

    def test_missing_certificate_file_is_rejected(
        self, pki: FleetPki, tmp_path: Path
    ) -> None:
        device = pki.device("sensor-1")

        with pytest.raises(CredentialsError, match="cannot read certificate"):
            DeviceClient(
                "127.0.0.1", 5684, tmp_path / "none.pem", device.key, device.cert
            )

    def test_unknown_method_is_rejected(self, pki: FleetPki) -> None:
        device = pki.device("sensor-1")
        client = DeviceClient("127.0.0.1", 5684, device.cert, device.key, device.cert)

        with pytest.raises(ValueError, match="method must be one of"):
            client.request("BREW", ".d")

    def test_oversized_request_is_rejected(
        self, gateway: GatewayThread, pki: FleetPki
    ) -> None:
        with connect(gateway, pki.device("sensor-1")) as client:
            with pytest.raises(ValueError, match="exceeds the maximum of 16384"):
                client.request("PUT", ".d/blob", b"x" * 16384)
            reply = client.request("GET", ".d")

        assert reply.code.dotted == "2.05"

    def test_request_before_connect_is_an_error(self, pki: FleetPki) -> None:
        device = pki.device("sensor-1")
        client = DeviceClient("127.0.0.1", 5684, device.cert, device.key, device.cert)

        with pytest.raises(RuntimeError, match="channel is created"):
            client.request("GET", ".d")

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param({"ack_timeout": 0.0}, id="fail/zero-ack-timeout"),
            pytest.param({"ack_random_factor": 0.5}, id="fail/factor-below-1"),
            pytest.param({"max_retransmit": -1}, id="fail/negative-retransmit"),
        ],
    )
    def test_invalid_transmission_parameters(self, options: dict[str, float]) -> None:
        with pytest.raises(ValueError):
            TransmissionParameters(**options)  # type: ignore[arg-type]
