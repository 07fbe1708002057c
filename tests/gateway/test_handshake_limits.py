"""One source address cannot fill the session table with stalled handshakes."""

from __future__ import annotations

import datetime as dt
import time

from aiocoap.numbers.codes import Code

from .conftest import FleetPki, GatewayFactory, connect
from .peers import PartialHandshake

LIMIT = 3


def test_handshakes_per_address_are_bounded(
    start_gateway: GatewayFactory, pki: FleetPki
) -> None:
    gateway = start_gateway(
        max_handshakes_per_address=LIMIT,
        handshake_timeout=dt.timedelta(seconds=0.5),
    )
    peers = [PartialHandshake(gateway.port) for _ in range(LIMIT + 2)]
    try:
        for peer in peers[:LIMIT]:
            peer.open_session()
        for peer in peers[LIMIT:]:
            peer.socket.settimeout(0.5)
            hello = peer.next_flight()
            peer.exchange(hello)  # the cookie round is still answered
            peer.socket.send(peer.next_flight())

        time.sleep(0.2)
        assert gateway.session_count() == LIMIT

        # Once the stalled handshakes time out, the address may connect again.
        deadline = time.monotonic() + 4.0
        while gateway.session_count() and time.monotonic() < deadline:
            time.sleep(0.1)
        client = connect(gateway, pki.device("sensor-1"))
        with client:
            assert client.request("GET", ".d").code is Code.CONTENT
    finally:
        for peer in peers:
            peer.close()
