"""The DTLS listener under abuse: stray data, forged cookies, floods, stalls.

Each test keeps a legitimate device connected through the abuse and
checks that it is still served afterwards. Session-table state is read
on the gateway's loop thread.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from aiocoap import optiontypes
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.numbers.types import Type

from fleetgate.client import (
    JSON,
    ClientError,
    DeviceClient,
    HandshakeTimeout,
    SessionClosed,
)
from fleetgate.gateway import records

from .conftest import FleetPki, GatewayFactory, GatewayThread, connect
from .peers import PartialHandshake, UdpRelay, receive_all, udp_socket, with_cookie

# Sessions are swept once a second, so a timed-out session is gone
# within its timeout plus one sweep; allow a margin on top.
SWEEP_MARGIN = 2.5


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` every 50 ms until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def assert_served(client: DeviceClient) -> None:
    reply = client.request("GET", ".d")
    assert reply.code.dotted == "2.05", reply


@pytest.fixture
def device(gateway: GatewayThread, pki: FleetPki) -> Iterator[DeviceClient]:
    """A legitimate device with an established session."""
    client = connect(gateway, pki.device("sensor-good"))
    client.connect()
    yield client
    client.close()


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """A list of sockets that is closed after the test."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def hello_verify_cookie(datagram: bytes) -> bytes:
    """Return the cookie of a HelloVerifyRequest datagram (RFC 6347 4.2.1)."""
    assert datagram[13] == records.HANDSHAKE_HELLO_VERIFY_REQUEST
    # Record header, handshake header, then server_version (2).
    position = records.RECORD_HEADER_SIZE + records.HANDSHAKE_HEADER_SIZE + 2
    return datagram[position + 1 : position + 1 + datagram[position]]


def first_hello(port: int) -> bytes:
    """Return a real first ClientHello, without a cookie, from OpenSSL."""
    peer = PartialHandshake(port)
    try:
        return peer.next_flight()
    finally:
        peer.close()


class TestStrayDatagrams:
    def test_random_datagrams_create_no_session(
        self,
        gateway: GatewayThread,
        device: DeviceClient,
        sockets: list[socket.socket],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="fleetgate")
        generator = random.Random(7)
        prefixes = [b"", b"\x16\xfe\xfd", b"\x16\xfe\xff\x00\x00", b"\x17\xfe\xfd"]
        for index in range(40):
            sock = udp_socket(gateway.port)
            sockets.append(sock)
            for _ in range(5):
                size = generator.randrange(0, 300)
                noise = generator.randbytes(size)
                sock.send(prefixes[index % len(prefixes)] + noise)

        assert_served(device)
        assert gateway.session_count() == 1
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class TestCookies:
    def test_forged_cookie_gets_new_verify_request(
        self, gateway: GatewayThread, device: DeviceClient, sockets: list[socket.socket]
    ) -> None:
        hello = with_cookie(first_hello(gateway.port), b"F" * 16)
        sock = udp_socket(gateway.port)
        sockets.append(sock)

        sock.send(hello)
        answer = sock.recv(65535)

        assert answer[13] == records.HANDSHAKE_HELLO_VERIFY_REQUEST
        assert records.parse_client_hello(hello) is not None
        assert gateway.session_count() == 1  # only the legitimate device
        assert_served(device)

    def test_other_address_cookie_is_rejected(
        self, gateway: GatewayThread, device: DeviceClient, sockets: list[socket.socket]
    ) -> None:
        hello = first_hello(gateway.port)
        issuer, replayer = udp_socket(gateway.port), udp_socket(gateway.port)
        sockets += [issuer, replayer]
        issuer.send(hello)
        cookie = hello_verify_cookie(issuer.recv(65535))

        replayer.send(with_cookie(hello, cookie))
        answer = replayer.recv(65535)

        assert answer[13] == records.HANDSHAKE_HELLO_VERIFY_REQUEST
        assert gateway.session_count() == 1

    def test_hello_flood_creates_no_session(
        self, gateway: GatewayThread, device: DeviceClient, sockets: list[socket.socket]
    ) -> None:
        hello = first_hello(gateway.port)
        forged = with_cookie(hello, bytes(16))
        for _ in range(200):
            sock = udp_socket(gateway.port)
            sockets.append(sock)
            sock.send(hello)
            sock.send(forged)

        assert_served(device)
        replies = [reply for sock in sockets for reply in receive_all(sock, 0.0)]
        assert gateway.session_count() == 1
        # Every reply is a HelloVerifyRequest no larger than the hello, so
        # a spoofed source gains no amplification.
        assert len(replies) > 0
        for reply in replies:
            assert reply[13] == records.HANDSHAKE_HELLO_VERIFY_REQUEST
            assert len(reply) <= len(hello)

    def test_flood_does_not_stop_new_handshakes(
        self, gateway: GatewayThread, pki: FleetPki, sockets: list[socket.socket]
    ) -> None:
        hello = first_hello(gateway.port)
        for _ in range(100):
            sock = udp_socket(gateway.port)
            sockets.append(sock)
            sock.send(hello)

        with connect(gateway, pki.device("sensor-new")) as client:
            assert_served(client)


class TestTimeouts:
    def test_stalled_handshake_is_removed(
        self, start_gateway: GatewayFactory, pki: FleetPki
    ) -> None:
        gateway = start_gateway(handshake_timeout=dt.timedelta(seconds=0.5))
        stalled = PartialHandshake(gateway.port)
        try:
            stalled.open_session()
            assert gateway.session_count() == 1
            with connect(gateway, pki.device("sensor-good")) as client:
                assert wait_until(
                    lambda: gateway.session_count() == 1, 0.5 + SWEEP_MARGIN
                )
                assert_served(client)
                address = ("127.0.0.1", stalled.source_port)
                assert gateway.call(lambda: address not in gateway.listener.sessions)
        finally:
            stalled.close()

    def test_idle_session_is_closed_with_close_notify(
        self, start_gateway: GatewayFactory, pki: FleetPki
    ) -> None:
        gateway = start_gateway(idle_timeout=dt.timedelta(seconds=0.5))
        client = connect(gateway, pki.device("sensor-idle"))
        with client:
            assert_served(client)
            assert wait_until(lambda: gateway.session_count() == 0, 0.5 + SWEEP_MARGIN)
            with pytest.raises(SessionClosed) as closed:
                client.request("GET", ".d")
        assert closed.value.alert == "close_notify"

    def test_active_session_outlives_idle_timeout(
        self, start_gateway: GatewayFactory, pki: FleetPki
    ) -> None:
        gateway = start_gateway(idle_timeout=dt.timedelta(seconds=1))
        with connect(gateway, pki.device("sensor-busy")) as client:
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                assert_served(client)
                time.sleep(0.2)
            assert gateway.session_count() == 1


class TestSessionTable:
    def test_full_table_drops_new_handshakes(
        self,
        start_gateway: GatewayFactory,
        pki: FleetPki,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        gateway = start_gateway(max_sessions=2)
        caplog.set_level(logging.WARNING, logger="fleetgate")
        first = connect(gateway, pki.device("sensor-1"))
        second = connect(gateway, pki.device("sensor-2"))
        third = connect(gateway, pki.device("sensor-3"), timeout=1.0)
        with first, second:
            with pytest.raises(HandshakeTimeout):
                third.connect()
            assert gateway.session_count() == 2
            assert_served(first)
            assert_served(second)
        messages = [record.getMessage() for record in caplog.records]
        assert any(
            "session table full" in m and "max_sessions=2" in m for m in messages
        )

        # Closing with close_notify frees the places at once.
        assert wait_until(lambda: gateway.session_count() == 0, 2.0)
        with connect(gateway, pki.device("sensor-3")) as late:
            assert_served(late)

    def test_stalled_handshakes_count_against_table(
        self, start_gateway: GatewayFactory, pki: FleetPki
    ) -> None:
        gateway = start_gateway(max_sessions=3)
        stalled = [PartialHandshake(gateway.port) for _ in range(5)]
        try:
            for peer in stalled[:3]:
                peer.open_session()
            for peer in stalled[3:]:
                hello = peer.next_flight()
                peer.exchange(hello)
                peer.socket.send(peer.next_flight())
            assert gateway.session_count() == 3
        finally:
            for peer in stalled:
                peer.close()


class TestSameAddress:
    def test_new_handshake_replaces_established_session(
        self, gateway: GatewayThread, pki: FleetPki, database: object
    ) -> None:
        old = connect(gateway, pki.device("sensor-1"))
        old.connect()
        assert_served(old)
        address = old.channel.local_address
        old.channel.abort()  # gone without close_notify, as after a reboot

        new = connect(gateway, pki.device("sensor-2"), source_address=address)
        with new:
            assert_served(new)
            assert gateway.session_count() == 1
            link = gateway.call(
                lambda: gateway.listener.sessions[address].application_state
            )
            device = getattr(link, "device", None)
            assert device is not None
            assert device.certificate_id == "sensor-2"

    def test_new_handshake_replaces_stalled_handshake(
        self, gateway: GatewayThread, pki: FleetPki
    ) -> None:
        # A device that restarts its handshake from the same port, as one
        # behind a NAT does after a reboot, must not wait for the stalled
        # one to time out.
        stalled = PartialHandshake(gateway.port)
        stalled.open_session()
        address = ("127.0.0.1", stalled.source_port)
        stalled.close()

        new = connect(gateway, pki.device("sensor-1"), source_address=address)
        with new:
            assert_served(new)
            assert gateway.session_count() == 1


class TestEstablishedPeerAddress:
    """Datagrams that arrive from the address of an established session."""

    @pytest.fixture
    def relay(self, gateway: GatewayThread) -> Iterator[UdpRelay]:
        relay = UdpRelay(gateway.port)
        yield relay
        relay.close()

    @pytest.fixture
    def relayed(
        self, gateway: GatewayThread, pki: FleetPki, relay: UdpRelay
    ) -> Iterator[DeviceClient]:
        client = connect(gateway, pki.device("sensor-relayed"), port=relay.port)
        with client:
            assert_served(client)
            yield client

    def test_garbage_keeps_session(
        self, gateway: GatewayThread, relay: UdpRelay, relayed: DeviceClient
    ) -> None:
        generator = random.Random(11)
        for prefix in (b"", b"\x17\xfe\xfd\x00\x01", b"\x15\xfe\xfd\x00\x01"):
            relay.inject_to_server(prefix + generator.randbytes(60))

        assert_served(relayed)
        assert gateway.session_count() == 1

    def test_hello_without_cookie_keeps_session(
        self, gateway: GatewayThread, relay: UdpRelay, relayed: DeviceClient
    ) -> None:
        # Anyone can send a ClientHello from a spoofed address, but only
        # the address's owner can return the cookie (RFC 6347 4.2.8).
        relay.inject_to_server(first_hello(gateway.port))

        assert_served(relayed)
        assert gateway.session_count() == 1

    def test_replayed_second_hello_keeps_session(
        self, gateway: GatewayThread, relay: UdpRelay, relayed: DeviceClient
    ) -> None:
        # A late duplicate of the ClientHello that opened the session
        # carries a valid cookie, yet starts no new connection.
        second_hello = [
            datagram
            for datagram in relay.to_server
            if (hello := records.parse_client_hello(datagram)) and hello.cookie
        ][0]
        relay.inject_to_server(second_hello)

        assert_served(relayed)
        assert gateway.session_count() == 1


# Length of the measured abuse run, in seconds, and the pause between
# rounds that lets the gateway's loop thread take the GIL.
ABUSE_SECONDS = 3.0
ABUSE_PAUSE = 0.01
# Source ports a round of the ClientHello flood uses, and handshakes
# left stalled after the cookie round over the whole run.
FLOOD_PORTS = 24
MAX_STALLED = 6
# Critical (odd) option numbers from the experimental range 65000-65535,
# which the CoAP option registry leaves unassigned (RFC 7252 5.4.6, 12.2).
UNKNOWN_CRITICAL_OPTIONS = (65001, 65003)


class Abuser:
    """Sends every kind of bad traffic in rounds and counts what it sent.

    It runs in its own thread while a legitimate device makes requests,
    and touches only its own sockets and its own authenticated client.
    """

    def __init__(self, port: int, insider: DeviceClient) -> None:
        self.port = port
        self.insider = insider
        self.sent: dict[str, int] = dict.fromkeys(
            ("random", "truncated", "hello", "replayed", "stalled", "coap"), 0
        )
        self.stalled: list[PartialHandshake] = []
        self._generator = random.Random(31)
        self._hello = first_hello(port)
        self._replay_source = PartialHandshake(port)
        self._second_hello = self._replay_source.open_session()
        self._pool = [udp_socket(port) for _ in range(16)]

    def run(self, stop: threading.Event) -> None:
        """Send rounds until ``stop`` is set or ABUSE_SECONDS pass."""
        deadline = time.monotonic() + ABUSE_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            self._stray_and_truncated()
            self._flood()
            self._replay()
            self._stall()
            self._bad_coap()
            time.sleep(ABUSE_PAUSE)

    def close(self) -> None:
        """Release every socket without telling the gateway."""
        for sock in self._pool:
            sock.close()
        for peer in [self._replay_source, *self.stalled]:
            peer.close()

    @property
    def total(self) -> int:
        """Datagrams and DTLS records sent so far."""
        return sum(self.sent.values())

    def _stray_and_truncated(self) -> None:
        prefixes = [b"", b"\x16\xfe\xfd", b"\x17\xfe\xfd\x00\x01", b"\x15\xfe\xfd"]
        for index, sock in enumerate(self._pool):
            noise = self._generator.randbytes(self._generator.randrange(1, 400))
            sock.send(prefixes[index % len(prefixes)] + noise)
            self.sent["random"] += 1
            cut = self._generator.randrange(1, len(self._hello))
            sock.send(self._hello[:cut])
            self.sent["truncated"] += 1

    def _flood(self) -> None:
        # Fresh source ports each round, as spoofed senders would use.
        forged = with_cookie(self._hello, self._generator.randbytes(16))
        for _ in range(FLOOD_PORTS):
            sock = udp_socket(self.port)
            try:
                sock.send(self._hello)
                sock.send(forged)
            finally:
                sock.close()
            self.sent["hello"] += 2

    def _replay(self) -> None:
        # From its own address the copy repeats a stalled handshake's
        # hello. From any other address the cookie is wrong.
        self._replay_source.socket.send(self._second_hello)
        self._pool[0].send(self._second_hello)
        self.sent["replayed"] += 2

    def _stall(self) -> None:
        if len(self.stalled) >= MAX_STALLED:
            return
        peer = PartialHandshake(self.port)
        self.stalled.append(peer)
        peer.open_session()
        self.sent["stalled"] += 2

    def _bad_coap(self) -> None:
        channel = self.insider.channel
        oversized = b"\x50\x02\x12\x34\xb2.d\xff" + self._generator.randbytes(15000)
        messages = [
            self._generator.randbytes(self._generator.randrange(1, 64)),
            b"\x40\x01\x12",  # shorter than the 4-byte header
            b"\x48\x01\x12\x34",  # token length 8, but no token follows
            oversized,
            *(
                self._critical_option_request(number)
                for number in UNKNOWN_CRITICAL_OPTIONS
            ),
        ]
        for message in messages:
            channel.send(message)
            self.sent["coap"] += 1
        # Drain the responses so that the client's socket never fills.
        while channel.receive(0.0) is not None:
            pass

    def _critical_option_request(self, number: int) -> bytes:
        request = Message(code=Code.GET)
        request.mtype = Type.CON
        request.mid = self._generator.randrange(0x10000)
        request.token = b"\x01"
        request.opt.uri_path = (".d",)
        request.opt.add_option(optiontypes.OpaqueOption(OptionNumber(number), b"\x00"))
        return request.encode()


class TestMeasuredAbuse:
    def test_legitimate_device_served_throughout(
        self,
        start_gateway: GatewayFactory,
        pki: FleetPki,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.WARNING, logger="fleetgate")
        gateway = start_gateway(handshake_timeout=dt.timedelta(seconds=1))
        insider = connect(gateway, pki.device("sensor-insider"))
        legitimate = connect(gateway, pki.device("sensor-good"))
        with insider, legitimate:
            assert_served(insider)
            assert_served(legitimate)
            abuser = Abuser(gateway.port, insider)
            stop = threading.Event()
            thread = threading.Thread(target=abuser.run, args=(stop,), name="abuser")
            outcomes: list[str] = []
            thread.start()
            try:
                while thread.is_alive() and len(outcomes) < 10_000:
                    outcomes.append(legitimate_exchange(legitimate, len(outcomes)))
            finally:
                stop.set()
                thread.join(ABUSE_SECONDS + 5.0)
                abuser.close()

            succeeded = outcomes.count("ok")
            print(
                f"\nabuse: legitimate requests {succeeded}/{len(outcomes)} "
                f"succeeded; abuse sent {abuser.total} ({abuser.sent})"
            )
            assert len(outcomes) >= 20
            assert succeeded == len(outcomes), outcomes
            assert abuser.sent["hello"] >= 100
            # No session for the flood: the two devices, plus the stalled
            # handshakes that have not timed out yet.
            assert gateway.session_count() <= 2 + MAX_STALLED
            assert wait_until(lambda: gateway.session_count() <= 2, 1.0 + SWEEP_MARGIN)
            assert_served(legitimate)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []


def legitimate_exchange(client: DeviceClient, index: int) -> str:
    """Write then read back one value, and return "ok" or what went wrong."""
    value = str(index).encode()
    try:
        written = client.request("PUT", ".d/abuse", value, content_format=JSON)
        read = client.request("GET", ".d/abuse", accept=JSON)
    except ClientError as exc:
        return f"{index}: {type(exc).__name__}: {exc}"
    if written.code.dotted != "2.04":
        return f"{index}: PUT answered {written.code.dotted}"
    if read.code.dotted != "2.05" or read.payload != value:
        return f"{index}: GET answered {read.code.dotted} {read.payload!r}"
    return "ok"
