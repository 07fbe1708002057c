"""Established sessions on the gateway's own record layer, over real UDP.

Lost final flights, close_notify both ways, refused renegotiation and a
new handshake from the address of an established session, each with a
real OpenSSL client on the other side.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from OpenSSL import SSL

from fleetgate.client import SessionClosed
from fleetgate.gateway import records

from .conftest import FleetPki, GatewayFactory, GatewayThread, connect
from .peers import PartialHandshake, UdpRelay, receive_all
from .test_dtls import wait_until


def record_types(datagram: bytes) -> list[tuple[int, int]]:
    """Return (content type, epoch) of each record in ``datagram``."""
    return [
        (record[0], struct.unpack_from("!H", record, 3)[0])
        for record in records.iter_records(datagram)
    ]


@pytest.fixture
def relay(gateway: GatewayThread) -> Iterator[UdpRelay]:
    relay = UdpRelay(gateway.port)
    yield relay
    relay.close()


class TestFinalFlight:
    def test_lost_final_flight_is_sent_again(
        self, gateway: GatewayThread, pki: FleetPki, relay: UdpRelay
    ) -> None:
        dropped: list[bytes] = []

        def drop_first_final_flight(index: int, datagram: bytes) -> bool:
            if dropped or datagram[0] != records.CONTENT_CHANGE_CIPHER_SPEC:
                return False
            dropped.append(datagram)
            return True

        relay.drop_to_client = drop_first_final_flight
        client = connect(gateway, pki.device("sensor-1"), port=relay.port)
        with client:
            reply = client.request("GET", ".d")

        final_flights = [
            datagram
            for datagram in relay.to_client
            if datagram[0] == records.CONTENT_CHANGE_CIPHER_SPEC
        ]
        assert len(dropped) == 1
        assert len(final_flights) == 2
        assert final_flights[0][3:11] != final_flights[1][3:11]
        assert reply.code.dotted == "2.05"


class TestCloseNotify:
    def test_client_close_notify_is_answered(
        self, gateway: GatewayThread, pki: FleetPki, relay: UdpRelay
    ) -> None:
        client = connect(gateway, pki.device("sensor-1"), port=relay.port)
        with client:
            assert client.request("GET", ".d").code.dotted == "2.05"
            sent_before_close = len(relay.to_client)

        assert wait_until(lambda: gateway.session_count() == 0, 2.0)
        assert wait_until(lambda: len(relay.to_client) > sent_before_close, 2.0)
        assert record_types(relay.to_client[-1]) == [(records.CONTENT_ALERT, 1)]

    def test_gateway_stop_sends_close_notify(
        self, start_gateway: GatewayFactory, pki: FleetPki
    ) -> None:
        gateway = start_gateway()
        client = connect(gateway, pki.device("sensor-1"))
        client.connect()
        assert client.request("GET", ".d").code.dotted == "2.05"

        gateway.call(lambda: gateway.listener.close())

        with pytest.raises(SessionClosed) as closed:
            client.request("GET", ".d")
        client.close()
        assert closed.value.alert == "close_notify"


class TestRenegotiation:
    def test_client_hello_in_session_is_refused(
        self, gateway: GatewayThread, pki: FleetPki
    ) -> None:
        device = pki.device("sensor-1")
        peer = PartialHandshake(gateway.port, certificate=device.cert, key=device.key)
        try:
            peer.finish()
            peer.connection.renegotiate()
            with pytest.raises(SSL.WantReadError):
                peer.connection.do_handshake()
            hello = peer.send_pending()
            replies = receive_all(peer.socket, 0.5)

            assert record_types(hello[0]) == [(records.CONTENT_HANDSHAKE, 1)]
            assert [record_types(reply) for reply in replies] == [
                [(records.CONTENT_ALERT, 1)]
            ]
            assert gateway.session_count() == 1
        finally:
            peer.close()


class TestNewHandshakeFromSameAddress:
    def test_established_session_survives_unfinished_handshake(
        self, gateway: GatewayThread, pki: FleetPki, relay: UdpRelay
    ) -> None:
        client = connect(gateway, pki.device("sensor-1"), port=relay.port)
        with client:
            assert client.request("GET", ".d").code.dotted == "2.05"
            # Keep handshake replies meant for the second client away from
            # the first, which shares its address through the relay.
            relay.drop_to_client = lambda index, datagram: datagram[:1] == b"\x16"
            intruder = PartialHandshake(gateway.port)
            try:
                answers = start_handshake_through(relay, intruder)
                assert answers >= 1
                assert gateway.call(lambda: len(gateway.listener.replacements)) == 1

                assert client.request("GET", ".d").code.dotted == "2.05"
                assert gateway.session_count() == 1
            finally:
                intruder.close()


def start_handshake_through(relay: UdpRelay, peer: PartialHandshake) -> int:
    """Run the cookie round and the second ClientHello from the relay's address.

    Returns how many server datagrams followed the second ClientHello.
    """
    hello = peer.next_flight()
    seen = len(relay.to_client)
    relay.inject_to_server(hello)
    assert wait_until(lambda: len(relay.to_client) > seen, 2.0)
    peer.connection.bio_write(relay.to_client[seen])

    second_hello = peer.next_flight()
    seen = len(relay.to_client)
    relay.inject_to_server(second_hello)
    assert wait_until(lambda: len(relay.to_client) > seen, 2.0)
    return len(relay.to_client) - seen
