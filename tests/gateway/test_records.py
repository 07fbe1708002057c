"""DTLS record framing and the stateless cookie exchange."""

from __future__ import annotations

import struct

import pytest

from fleetgate.gateway import records


def client_hello(
    cookie: bytes = b"", *, session_id: bytes = b"", epoch: int = 0
) -> bytes:
    """Build a minimal unfragmented DTLS 1.2 ClientHello datagram."""
    body = (
        struct.pack("!H", records.DTLS_1_2)
        + bytes(32)
        + bytes([len(session_id)])
        + session_id
        + bytes([len(cookie)])
        + cookie
        + struct.pack("!H", 2)
        + b"\xc0\xae"  # one cipher suite
        + b"\x01\x00"  # null compression
    )
    handshake = (
        bytes([records.HANDSHAKE_CLIENT_HELLO])
        + len(body).to_bytes(3, "big")
        + b"\x00\x00"
        + b"\x00\x00\x00"
        + len(body).to_bytes(3, "big")
        + body
    )
    return (
        struct.pack("!BHH", records.CONTENT_HANDSHAKE, records.DTLS_1_0, epoch)
        + b"\x00\x00\x00\x00\x00\x07"
        + struct.pack("!H", len(handshake))
        + handshake
    )


class TestParseClientHello:
    def test_reads_cookie_and_record_sequence(self) -> None:
        hello = records.parse_client_hello(client_hello(b"abc", session_id=b"s" * 32))
        assert hello is not None
        assert hello.cookie == b"abc"
        assert hello.record_sequence == b"\x00\x00\x00\x00\x00\x07"

    def test_empty_cookie(self) -> None:
        hello = records.parse_client_hello(client_hello())
        assert hello is not None
        assert hello.cookie == b""

    @pytest.mark.parametrize(
        "datagram",
        [
            pytest.param(b"", id="fail/empty"),
            pytest.param(b"\x17\xfe\xfd" + bytes(30), id="fail/application-data"),
            pytest.param(client_hello()[:20], id="fail/truncated"),
            pytest.param(client_hello(epoch=1), id="fail/epoch-1"),
            pytest.param(bytes(range(256)), id="fail/garbage"),
        ],
    )
    def test_rejects_non_hello(self, datagram: bytes) -> None:
        assert records.parse_client_hello(datagram) is None

    def test_rejects_fragment(self) -> None:
        datagram = bytearray(client_hello(b"abc"))
        # Shrink the fragment length so the hello is announced as partial.
        datagram[13 + 11] -= 1
        assert records.parse_client_hello(bytes(datagram)) is None


class TestHelloVerifyRequest:
    def test_echoes_record_sequence_and_carries_cookie(self) -> None:
        hello = records.parse_client_hello(client_hello())
        assert hello is not None
        reply = records.hello_verify_request(hello, b"C" * 16)
        content_type, version, epoch = struct.unpack_from("!BHH", reply)
        assert content_type == records.CONTENT_HANDSHAKE
        assert version == records.DTLS_1_0
        assert epoch == 0
        assert reply[5:11] == hello.record_sequence
        assert reply[13] == records.HANDSHAKE_HELLO_VERIFY_REQUEST
        assert reply.endswith(b"\x10" + b"C" * 16)

    def test_is_smaller_than_the_hello(self) -> None:
        datagram = client_hello()
        hello = records.parse_client_hello(datagram)
        assert hello is not None
        assert len(records.hello_verify_request(hello, b"C" * 16)) <= len(datagram) + 16


class TestCookieJar:
    def test_accepts_own_cookie_for_same_address(self) -> None:
        jar = records.CookieJar()
        cookie = jar.issue(("127.0.0.1", 5000))
        assert jar.check(("127.0.0.1", 5000), cookie)

    def test_rejects_cookie_of_other_address(self) -> None:
        jar = records.CookieJar()
        cookie = jar.issue(("127.0.0.1", 5000))
        assert not jar.check(("127.0.0.1", 5001), cookie)
        assert not jar.check(("127.0.0.2", 5000), cookie)

    def test_checked_cookie_rejected_for_other_address(self) -> None:
        jar = records.CookieJar()
        cookie = jar.issue(("127.0.0.1", 5000))
        accepted = jar.check(("127.0.0.1", 5000), cookie)

        assert accepted
        assert not jar.check(("127.0.0.1", 5001), cookie)

    def test_checked_cookie_accepted_again(self) -> None:
        jar = records.CookieJar()
        cookie = jar.issue(("127.0.0.1", 5000))
        jar.check(("127.0.0.1", 5000), cookie)

        assert jar.check(("127.0.0.1", 5000), cookie)
        assert not jar.check(("127.0.0.1", 5000), bytes(16))

    def test_accepts_previous_secret_after_one_rotation(self) -> None:
        jar = records.CookieJar(rotate_seconds=0.0)
        cookie = jar.issue(("::1", 5000))
        # Each call rotates; the cookie survives exactly one rotation.
        assert jar.check(("::1", 5000), cookie)
        assert not jar.check(("::1", 5000), cookie)


class TestPackDatagrams:
    def record(self, size: int) -> bytes:
        return struct.pack("!BHHHIH", 22, records.DTLS_1_2, 0, 0, 0, size) + bytes(size)

    def test_packs_records_up_to_mtu(self) -> None:
        flight = self.record(400) + self.record(400) + self.record(400)
        datagrams = records.pack_datagrams(flight, 1000)
        assert [len(d) for d in datagrams] == [826, 413]

    def test_keeps_oversized_record_whole(self) -> None:
        datagrams = records.pack_datagrams(self.record(2000), 1000)
        assert [len(d) for d in datagrams] == [2013]

    def test_drops_truncated_tail(self) -> None:
        flight = self.record(10) + self.record(10)[:-3]
        assert records.pack_datagrams(flight, 1000) == [self.record(10)]
