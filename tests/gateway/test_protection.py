"""The gateway's own DTLS record layer against OpenSSL on the other side.

Each test runs a real DTLS 1.2 handshake between two pyOpenSSL
connections over memory BIOs, takes the server's side over with
:func:`protection.take_over`, and exchanges records with the OpenSSL
client: what the gateway seals OpenSSL must open, and the reverse.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import time

import pytest
from OpenSSL import SSL

from fleetgate.gateway import protection, records
from fleetgate.gateway.server_identity import ServerIdentity

MTU = 1232
# Flights a DTLS 1.2 handshake takes in memory, with a margin.
MAX_HANDSHAKE_ROUNDS = 10

AEAD_SUITES = [
    pytest.param("ECDHE-ECDSA-AES128-CCM8", id="ccm8"),
    pytest.param("ECDHE-ECDSA-AES128-CCM", id="ccm"),
    pytest.param("ECDHE-ECDSA-AES128-GCM-SHA256", id="aes128-gcm"),
    pytest.param("ECDHE-ECDSA-AES256-GCM-SHA384", id="aes256-gcm"),
    pytest.param("ECDHE-ECDSA-CHACHA20-POLY1305", id="chacha20"),
]


def drain(connection: SSL.Connection) -> bytes:
    """Return everything OpenSSL has written."""
    chunks = []
    while True:
        try:
            chunk = connection.bio_read(65535)
        except SSL.WantReadError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def deliver(connection: SSL.Connection, flight: bytes) -> None:
    """Feed ``flight`` to OpenSSL one datagram at a time."""
    for datagram in records.pack_datagrams(flight, MTU):
        connection.bio_write(datagram)


def highest_epoch_1_sequence(flight: bytes) -> int:
    """Return the highest epoch 1 record sequence number in ``flight``, or -1."""
    highest = -1
    for record in records.iter_records(flight):
        epoch, high, low = struct.unpack_from("!HHI", record, 3)
        if epoch == 1:
            highest = max(highest, high << 32 | low)
    return highest


@dataclasses.dataclass
class Handshake:
    """Both ends of a completed handshake, before the final flight arrives."""

    client: SSL.Connection
    server: SSL.Connection
    final_flight: bytes
    highest_received: int


def handshake(identity: ServerIdentity, cipher: str) -> Handshake:
    """Run a DTLS 1.2 handshake until the server has sent its final flight."""
    ciphers = f"{cipher}:@SECLEVEL=0".encode()
    server_context = SSL.Context(SSL.DTLS_SERVER_METHOD)
    server_context.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_TICKET)
    server_context.set_cipher_list(ciphers)
    server_context.use_certificate_chain_file(
        str(identity.credentials.certificate_chain)
    )
    server_context.use_privatekey_file(str(identity.credentials.private_key))
    client_context = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    client_context.set_options(SSL.OP_NO_QUERY_MTU)
    client_context.set_cipher_list(ciphers)

    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    server.set_ciphertext_mtu(MTU)
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    client.set_ciphertext_mtu(MTU)

    highest_received = -1
    for _ in range(MAX_HANDSHAKE_ROUNDS):
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        flight = drain(client)
        highest_received = max(highest_received, highest_epoch_1_sequence(flight))
        deliver(server, flight)
        try:
            server.do_handshake()
        except SSL.WantReadError:
            deliver(client, drain(server))
            continue
        return Handshake(client, server, drain(server), highest_received)
    raise AssertionError("the handshake did not complete")


def finish(pair: Handshake) -> protection.RecordProtection:
    """Take the server over, deliver its final flight and complete the client."""
    switchover = protection.take_over(
        pair.server, pair.final_flight, pair.highest_received
    )
    assert switchover is not None
    deliver(pair.client, pair.final_flight)
    pair.client.do_handshake()
    return switchover.protection


def client_record(client: SSL.Connection, payload: bytes) -> bytes:
    """Return the record OpenSSL makes of ``payload``."""
    client.send(payload)
    return drain(client)


@pytest.fixture(params=AEAD_SUITES)
def established(
    request: pytest.FixtureRequest, server_identity: ServerIdentity
) -> tuple[SSL.Connection, protection.RecordProtection]:
    pair = handshake(server_identity, request.param)
    return pair.client, finish(pair)


class TestSuiteFor:
    @pytest.mark.parametrize(
        ("name", "bulk"),
        [
            pytest.param("ECDHE-ECDSA-AES128-CCM8", "AES128-CCM8", id="ok/ccm8"),
            pytest.param("ECDHE-ECDSA-AES128-CCM", "AES128-CCM", id="ok/ccm"),
            pytest.param("PSK-AES128-CCM8", "AES128-CCM8", id="ok/psk-ccm8"),
            pytest.param("PSK-AES128-GCM-SHA256", "AES128-GCM-SHA256", id="ok/psk-gcm"),
            pytest.param(
                "ECDHE-RSA-AES256-GCM-SHA384", "AES256-GCM-SHA384", id="ok/rsa-gcm"
            ),
            pytest.param(
                "ECDHE-PSK-CHACHA20-POLY1305",
                "CHACHA20-POLY1305",
                id="ok/ecdhe-psk-chacha20",
            ),
        ],
    )
    def test_names_bulk_cipher(self, name: str, bulk: str) -> None:
        suite = protection.suite_for(name)
        assert suite is not None
        assert suite.name == bulk

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param("ECDHE-ECDSA-AES128-SHA256", id="fail/cbc"),
            pytest.param("PSK-AES128-CBC-SHA256", id="fail/psk-cbc"),
            pytest.param("ECDHE-ECDSA-ARIA128-GCM-SHA256", id="fail/aria"),
        ],
    )
    def test_unsupported_is_none(self, name: str) -> None:
        assert protection.suite_for(name) is None


class TestKeyDerivation:
    @pytest.mark.parametrize(
        "cipher",
        [
            pytest.param("ECDHE-ECDSA-AES128-GCM-SHA256", id="sha256"),
            pytest.param("ECDHE-ECDSA-AES256-GCM-SHA384", id="sha384"),
        ],
    )
    def test_prf_matches_openssl_exporter(
        self, server_identity: ServerIdentity, cipher: str
    ) -> None:
        # RFC 5705 4: without a context the exporter is the PRF over the
        # master secret and client_random + server_random.
        pair = handshake(server_identity, cipher)
        suite = protection.suite_for(cipher)
        assert suite is not None
        exported = pair.server.export_keying_material(b"EXPERIMENTAL fleetgate", 48)
        master_secret = pair.server.master_key()
        client_random = pair.server.client_random()
        server_random = pair.server.server_random()
        assert master_secret is not None
        assert client_random is not None
        assert server_random is not None

        computed = protection.prf(
            master_secret,
            b"EXPERIMENTAL fleetgate",
            client_random + server_random,
            48,
            suite.prf_hash,
        )

        assert computed == exported

    def test_unsupported_suite_keeps_openssl(
        self, server_identity: ServerIdentity
    ) -> None:
        pair = handshake(server_identity, "ECDHE-ECDSA-AES128-SHA256")
        switchover = protection.take_over(
            pair.server, pair.final_flight, pair.highest_received
        )
        assert switchover is None


class TestRecordProtection:
    def test_openssl_opens_sealed_record(
        self, established: tuple[SSL.Connection, protection.RecordProtection]
    ) -> None:
        client, layer = established
        deliver(client, layer.seal(records.CONTENT_APPLICATION_DATA, b"hello"))
        assert client.recv(65535) == b"hello"

    def test_opens_openssl_record(
        self, established: tuple[SSL.Connection, protection.RecordProtection]
    ) -> None:
        client, layer = established
        opened = layer.open(client_record(client, b"ping"))
        assert opened == (records.CONTENT_APPLICATION_DATA, b"ping")

    def test_many_records_both_ways(
        self, established: tuple[SSL.Connection, protection.RecordProtection]
    ) -> None:
        client, layer = established
        for index in range(50):
            payload = bytes([index]) * (1 + index * 37 % 1100)
            deliver(client, layer.seal(records.CONTENT_APPLICATION_DATA, payload))
            assert client.recv(65535) == payload
            opened = layer.open(client_record(client, payload + b"!"))
            assert opened == (records.CONTENT_APPLICATION_DATA, payload + b"!")

    def test_replay_is_dropped(
        self, established: tuple[SSL.Connection, protection.RecordProtection]
    ) -> None:
        client, layer = established
        record = client_record(client, b"once")
        assert layer.open(record) is not None
        assert layer.open(record) is None

    def test_bad_tag_is_dropped_without_moving_window(
        self, established: tuple[SSL.Connection, protection.RecordProtection]
    ) -> None:
        client, layer = established
        record = client_record(client, b"tampered")
        forged = record[:-1] + bytes([record[-1] ^ 1])

        assert layer.open(forged) is None
        assert layer.open(record) == (records.CONTENT_APPLICATION_DATA, b"tampered")

    @pytest.mark.parametrize("epoch", [0, 2], ids=["old-epoch", "next-epoch"])
    def test_other_epoch_is_dropped(
        self,
        established: tuple[SSL.Connection, protection.RecordProtection],
        epoch: int,
    ) -> None:
        client, layer = established
        record = bytearray(client_record(client, b"epoch"))
        struct.pack_into("!H", record, 3, epoch)
        assert layer.open(bytes(record)) is None

    def test_reordered_records_within_window_are_accepted(
        self, established: tuple[SSL.Connection, protection.RecordProtection]
    ) -> None:
        client, layer = established
        sent = [client_record(client, bytes([index])) for index in range(5)]
        for index in (4, 1, 3, 0, 2):
            assert layer.open(sent[index]) == (
                records.CONTENT_APPLICATION_DATA,
                bytes([index]),
            )

    def test_record_left_of_window_is_dropped(
        self, established: tuple[SSL.Connection, protection.RecordProtection]
    ) -> None:
        client, layer = established
        old = client_record(client, b"old")
        for _ in range(protection.REPLAY_WINDOW):
            client_record(client, b"skipped")
        newest = client_record(client, b"new")

        assert layer.open(newest) is not None
        assert layer.open(old) is None

    def test_close_notify_reaches_openssl(
        self, established: tuple[SSL.Connection, protection.RecordProtection]
    ) -> None:
        client, layer = established
        deliver(client, layer.seal(records.CONTENT_ALERT, b"\x01\x00"))
        with pytest.raises(SSL.ZeroReturnError):
            client.recv(65535)

    def test_openssl_close_notify_opens_as_alert(
        self, established: tuple[SSL.Connection, protection.RecordProtection]
    ) -> None:
        client, layer = established
        with contextlib.suppress(SSL.Error):
            client.shutdown()
        assert layer.open(drain(client)) == (records.CONTENT_ALERT, b"\x01\x00")

    def test_exhausted_sequence_refuses_to_seal(
        self, established: tuple[SSL.Connection, protection.RecordProtection]
    ) -> None:
        client, layer = established
        layer.write_sequence = protection.MAX_SEQUENCE
        deliver(client, layer.seal(records.CONTENT_APPLICATION_DATA, b"last"))
        assert client.recv(65535) == b"last"
        with pytest.raises(protection.SequenceExhausted):
            layer.seal(records.CONTENT_APPLICATION_DATA, b"one too many")

    def test_oversized_plaintext_is_refused(
        self, established: tuple[SSL.Connection, protection.RecordProtection]
    ) -> None:
        _, layer = established
        with pytest.raises(ValueError, match="maximum is 16384"):
            layer.seal(
                records.CONTENT_APPLICATION_DATA,
                bytes(protection.MAX_PLAINTEXT + 1),
            )


class TestFinalFlight:
    @pytest.mark.parametrize(
        "cipher",
        [
            pytest.param("ECDHE-ECDSA-AES128-CCM8", id="explicit-nonce"),
            pytest.param("ECDHE-ECDSA-CHACHA20-POLY1305", id="implicit-nonce"),
        ],
    )
    def test_resent_flight_completes_client(
        self, server_identity: ServerIdentity, cipher: str
    ) -> None:
        pair = handshake(server_identity, cipher)
        switchover = protection.take_over(
            pair.server, pair.final_flight, pair.highest_received
        )
        assert switchover is not None
        # The first final flight is lost. The client's timer repeats its
        # flight, and the gateway replies with a fresh copy of its own.
        time.sleep(pair.client.DTLSv1_get_timeout() or 0.0)
        pair.client.DTLSv1_handle_timeout()
        repeated = drain(pair.client)
        finished = [
            switchover.protection.open(record)
            for record in records.iter_records(repeated)
            if record[3:5] == b"\x00\x01"
        ]
        assert finished[0] is not None
        assert finished[0][1][0] == records.HANDSHAKE_FINISHED

        deliver(pair.client, switchover.final_flight.datagram(switchover.protection))
        pair.client.do_handshake()
        deliver(
            pair.client,
            switchover.protection.seal(records.CONTENT_APPLICATION_DATA, b"after"),
        )
        assert pair.client.recv(65535) == b"after"

    def test_resent_flight_uses_new_sequence_numbers(
        self, server_identity: ServerIdentity
    ) -> None:
        pair = handshake(server_identity, "ECDHE-ECDSA-AES128-CCM8")
        switchover = protection.take_over(
            pair.server, pair.final_flight, pair.highest_received
        )
        assert switchover is not None
        first = switchover.final_flight.datagram(switchover.protection)
        second = switchover.final_flight.datagram(switchover.protection)
        sent = [*records.iter_records(pair.final_flight)]
        assert {record[3:11] for record in sent}.isdisjoint(
            {record[3:11] for record in records.iter_records(first)}
        )
        assert first[3:11] != second[3:11]


class TestReplayWindow:
    def test_first_record_is_fresh(self) -> None:
        assert protection.ReplayWindow().is_fresh(0)

    def test_accepted_is_not_fresh(self) -> None:
        window = protection.ReplayWindow()
        window.accept(7)
        assert not window.is_fresh(7)

    def test_gap_is_fresh(self) -> None:
        window = protection.ReplayWindow()
        window.accept(10)
        assert window.is_fresh(9)

    def test_left_edge(self) -> None:
        window = protection.ReplayWindow()
        window.accept(100)
        assert window.is_fresh(100 - protection.REPLAY_WINDOW + 1)
        assert not window.is_fresh(100 - protection.REPLAY_WINDOW)

    def test_large_jump_forgets_old(self) -> None:
        window = protection.ReplayWindow()
        window.accept(5)
        window.accept(5 + 1000)
        assert not window.is_fresh(5)
        assert window.is_fresh(5 + 999)

    def test_accept_up_to_marks_all(self) -> None:
        window = protection.ReplayWindow()
        window.accept_up_to(3)
        for sequence in range(4):
            assert not window.is_fresh(sequence)
        assert window.is_fresh(4)
