"""DTLS 1.2 record protection with AEAD ciphers, run without OpenSSL.

An established session needs only its keys, sequence numbers, epoch and
replay window, where OpenSSL keeps tens of kilobytes per connection
(buffers, the handshake transcript, the peer's chain). Once the
handshake is complete, the gateway derives the keys from the master
secret (RFC 5246 6.3) and seals and opens records itself, and the
OpenSSL connection is freed.

Supported bulk ciphers: AES-GCM (RFC 5288), AES-CCM and AES-CCM_8
(RFC 6655, RFC 7251) and ChaCha20-Poly1305 (RFC 7905), with any key
exchange: ECDHE with certificates or PSK. A suite outside this list
(such as a CBC suite) gets ``None`` from :func:`suite_for`, and its
session keeps the OpenSSL connection.

Records that fail authentication are dropped silently, with no alert
in reply (RFC 6347 4.1.2.7), and so are replays and records of another
epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct
from collections.abc import Callable
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives.ciphers.aead import (
    AESCCM,
    AESGCM,
    ChaCha20Poly1305,
)
from OpenSSL import SSL

from fleetgate.gateway.records import (
    CONTENT_CHANGE_CIPHER_SPEC,
    CONTENT_HANDSHAKE,
    DTLS_1_2,
    HANDSHAKE_FINISHED,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    iter_records,
)

_lib = Binding.lib

# Largest plaintext of one record (RFC 5246 6.2.1).
MAX_PLAINTEXT = 1 << 14
# Record sequence numbers are 48 bits and must never wrap (RFC 6347 4.1).
MAX_SEQUENCE = (1 << 48) - 1
# Width of the anti-replay window in records (RFC 6347 4.1.2.6).
REPLAY_WINDOW = 64
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1
# The epoch that the first handshake's ChangeCipherSpec starts.
FIRST_EPOCH = 1


class Aead(Protocol):
    """The part of cryptography's AEAD classes that records use."""

    def encrypt(
        self, nonce: bytes, data: bytes, associated_data: bytes | None
    ) -> bytes: ...

    def decrypt(
        self, nonce: bytes, data: bytes, associated_data: bytes | None
    ) -> bytes: ...


class SequenceExhausted(Exception):
    """The write sequence number of the epoch would wrap (RFC 6347 4.1)."""


@dataclasses.dataclass(frozen=True)
class AeadSuite:
    """The record-protection parameters of one bulk cipher (RFC 5246 6.3)."""

    name: str
    key_length: int
    fixed_iv_length: int
    # 8 for AES-GCM and AES-CCM, which send the nonce's variable part in
    # each record; 0 for ChaCha20-Poly1305, which derives it (RFC 7905 2).
    explicit_nonce_length: int
    tag_length: int
    prf_hash: str
    aead: Callable[[bytes], Aead]

    @property
    def key_block_length(self) -> int:
        """Bytes of key material both directions take; AEAD suites have no MAC key."""
        return 2 * (self.key_length + self.fixed_iv_length)


# Keyed by the end of OpenSSL's suite name, which names the bulk cipher
# whatever the key exchange ("ECDHE-ECDSA-", "PSK-", "ECDHE-PSK-").
_SUITES: tuple[AeadSuite, ...] = (
    AeadSuite("AES128-CCM8", 16, 4, 8, 8, "sha256", lambda k: AESCCM(k, 8)),
    AeadSuite("AES256-CCM8", 32, 4, 8, 8, "sha256", lambda k: AESCCM(k, 8)),
    AeadSuite("AES128-CCM", 16, 4, 8, 16, "sha256", AESCCM),
    AeadSuite("AES256-CCM", 32, 4, 8, 16, "sha256", AESCCM),
    AeadSuite("AES128-GCM-SHA256", 16, 4, 8, 16, "sha256", AESGCM),
    AeadSuite("AES256-GCM-SHA384", 32, 4, 8, 16, "sha384", AESGCM),
    AeadSuite("CHACHA20-POLY1305", 32, 12, 0, 16, "sha256", ChaCha20Poly1305),
)


def suite_for(openssl_name: str) -> AeadSuite | None:
    """Return the parameters of an OpenSSL cipher suite name, or None if unsupported."""
    for suite in _SUITES:
        if openssl_name == suite.name or openssl_name.endswith("-" + suite.name):
            return suite
    return None


def prf(secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str) -> bytes:
    """Compute the TLS 1.2 PRF, P_hash over HMAC (RFC 5246 section 5)."""
    digest = getattr(hashlib, hash_name)
    labelled = label + seed
    output = bytearray()
    a = labelled
    while len(output) < length:
        a = hmac.digest(secret, a, digest)
        output += hmac.digest(secret, a + labelled, digest)
    return bytes(output[:length])


@dataclasses.dataclass(frozen=True)
class SessionKeys:
    """The key block of a session, split by direction (RFC 5246 6.3)."""

    client_key: bytes
    server_key: bytes
    client_iv: bytes
    server_iv: bytes


def derive_keys(
    suite: AeadSuite, master_secret: bytes, client_random: bytes, server_random: bytes
) -> SessionKeys:
    """Expand the master secret into the session's write keys and IVs."""
    block = prf(
        master_secret,
        b"key expansion",
        server_random + client_random,
        suite.key_block_length,
        suite.prf_hash,
    )
    key, iv = suite.key_length, suite.fixed_iv_length
    return SessionKeys(
        client_key=block[0:key],
        server_key=block[key : 2 * key],
        client_iv=block[2 * key : 2 * key + iv],
        server_iv=block[2 * key + iv : 2 * key + 2 * iv],
    )


class ReplayWindow:
    """The sliding anti-replay window of one epoch (RFC 6347 4.1.2.6)."""

    __slots__ = ("highest", "_seen")

    def __init__(self) -> None:
        # Highest sequence number accepted so far, -1 before the first.
        self.highest = -1
        # Bit i set: sequence number ``highest - i`` was accepted.
        self._seen = 0

    def is_fresh(self, sequence: int) -> bool:
        """Tell whether ``sequence`` is neither a replay nor left of the window."""
        if sequence > self.highest:
            return True
        offset = self.highest - sequence
        return offset < REPLAY_WINDOW and not (self._seen >> offset) & 1

    def accept(self, sequence: int) -> None:
        """Mark ``sequence`` seen; call only once its record authenticated."""
        if sequence > self.highest:
            shift = sequence - self.highest
            self._seen = ((self._seen << shift) | 1) & _WINDOW_MASK
            self.highest = sequence
        else:
            self._seen |= 1 << (self.highest - sequence)

    def accept_up_to(self, sequence: int) -> None:
        """Mark every sequence number up to ``sequence`` seen."""
        if sequence > self.highest:
            self.highest = sequence
            self._seen = _WINDOW_MASK


class RecordProtection:
    """Seals and opens the records of one epoch on the server's side.

    The server writes with the server key and reads with the client key.
    The AEAD object is built per record: it costs about a microsecond,
    where keeping two would cost kilobytes per idle session.
    """

    __slots__ = (
        "suite",
        "epoch",
        "write_sequence",
        "window",
        "_read_key",
        "_read_iv",
        "_write_key",
        "_write_iv",
    )

    def __init__(
        self,
        suite: AeadSuite,
        keys: SessionKeys,
        *,
        epoch: int = FIRST_EPOCH,
        write_sequence: int = 0,
    ) -> None:
        self.suite = suite
        self.epoch = epoch
        self.write_sequence = write_sequence
        self.window = ReplayWindow()
        self._read_key = keys.client_key
        self._read_iv = keys.client_iv
        self._write_key = keys.server_key
        self._write_iv = keys.server_iv

    def seal(self, content_type: int, plaintext: bytes) -> bytes:
        """Return ``plaintext`` as one protected record of the current epoch.

        Raises SequenceExhausted once the epoch's 2^48 sequence numbers
        are used up, and ValueError for a plaintext over 2^14 bytes.
        """
        if len(plaintext) > MAX_PLAINTEXT:
            raise ValueError(
                f"cannot seal a record of {len(plaintext)} bytes: the maximum "
                f"is {MAX_PLAINTEXT} (RFC 5246 6.2.1)"
            )
        sequence = self.write_sequence
        if sequence > MAX_SEQUENCE:
            raise SequenceExhausted(
                f"cannot seal a record: epoch {self.epoch} has used all "
                "2^48 sequence numbers"
            )
        self.write_sequence = sequence + 1
        return self._seal(
            self._write_key, self._write_iv, content_type, sequence, plaintext
        )

    def open(self, record: bytes) -> tuple[int, bytes] | None:
        """Return (content type, plaintext) of one record, or None to drop it.

        A record is dropped when it belongs to another epoch, is a replay,
        is malformed or fails authentication. Only an authenticated record
        moves the replay window.
        """
        content_type, version, epoch, high, low, length = RECORD_HEADER.unpack_from(
            record
        )
        if epoch != self.epoch or version != DTLS_1_2:
            return None
        sequence = high << 32 | low
        if not self.window.is_fresh(sequence):
            return None
        plaintext = self._open(self._read_key, self._read_iv, record, sequence)
        if plaintext is None:
            return None
        self.window.accept(sequence)
        return content_type, plaintext

    def open_sent(self, record: bytes) -> bytes | None:
        """Return the plaintext of a record this side sealed, as OpenSSL did.

        It recovers the server's Finished message from the final flight,
        so that the flight can be sealed again with fresh sequence numbers.
        """
        _, _, epoch, high, low, _ = RECORD_HEADER.unpack_from(record)
        if epoch != self.epoch:
            return None
        sequence = high << 32 | low
        return self._open(self._write_key, self._write_iv, record, sequence)

    def _nonce(self, iv: bytes, sequence_bytes: bytes) -> bytes:
        if self.suite.explicit_nonce_length:
            # RFC 5288 3 and RFC 6655 3: salt from the key block, then
            # the explicit part, which is the epoch and sequence number.
            return iv + sequence_bytes
        # RFC 7905 2: the IV XOR the left-padded epoch and sequence number.
        padded = int.from_bytes(sequence_bytes, "big")
        return (int.from_bytes(iv, "big") ^ padded).to_bytes(len(iv), "big")

    def _seal(
        self,
        key: bytes,
        iv: bytes,
        content_type: int,
        sequence: int,
        plaintext: bytes,
    ) -> bytes:
        # DTLS puts the epoch in the top 16 bits of the AEAD's 64-bit
        # sequence number (RFC 6347 4.1.2.1).
        sequence_bytes = struct.pack(
            "!HHI", self.epoch, sequence >> 32, sequence & 0xFFFFFFFF
        )
        associated = sequence_bytes + struct.pack(
            "!BHH", content_type, DTLS_1_2, len(plaintext)
        )
        sealed = self.suite.aead(key).encrypt(
            self._nonce(iv, sequence_bytes), plaintext, associated
        )
        explicit = sequence_bytes if self.suite.explicit_nonce_length else b""
        header = RECORD_HEADER.pack(
            content_type,
            DTLS_1_2,
            self.epoch,
            sequence >> 32,
            sequence & 0xFFFFFFFF,
            len(explicit) + len(sealed),
        )
        return header + explicit + sealed

    def _open(
        self, key: bytes, iv: bytes, record: bytes, sequence: int
    ) -> bytes | None:
        suite = self.suite
        explicit_length = suite.explicit_nonce_length
        fragment = record[RECORD_HEADER_SIZE:]
        plaintext_length = len(fragment) - explicit_length - suite.tag_length
        if plaintext_length < 0 or plaintext_length > MAX_PLAINTEXT:
            return None
        sequence_bytes = record[3:11]
        if explicit_length:
            nonce = iv + fragment[:explicit_length]
        else:
            nonce = self._nonce(iv, sequence_bytes)
        associated = sequence_bytes + struct.pack(
            "!BHH", record[0], DTLS_1_2, plaintext_length
        )
        try:
            return suite.aead(key).decrypt(
                nonce, fragment[explicit_length:], associated
            )
        except InvalidTag:
            return None


class FinalFlight:
    """The server's last handshake flight, kept to send again if it was lost.

    When the server's ChangeCipherSpec and Finished do not arrive, the
    client retransmits its own last flight, and the server must then send
    its flight again (RFC 6347 4.2.4). Only the Finished message and
    the next epoch 0 sequence number are kept, and each retransmission
    gets fresh record sequence numbers.
    """

    __slots__ = ("finished", "_plain_sequence")

    def __init__(self, finished: bytes, plain_sequence: int) -> None:
        self.finished = finished
        self._plain_sequence = plain_sequence

    def datagram(self, protection: RecordProtection) -> bytes:
        """Return the flight as one datagram: ChangeCipherSpec, then Finished."""
        sequence = self._plain_sequence
        self._plain_sequence += 1
        change_cipher_spec = RECORD_HEADER.pack(
            CONTENT_CHANGE_CIPHER_SPEC,
            DTLS_1_2,
            0,
            sequence >> 32,
            sequence & 0xFFFFFFFF,
            1,
        )
        # RFC 5246 7.1: the message is a single byte of value 1.
        finished = protection.seal(CONTENT_HANDSHAKE, self.finished)
        return change_cipher_spec + b"\x01" + finished


@dataclasses.dataclass(frozen=True)
class Switchover:
    """The record layer and final flight a session keeps instead of OpenSSL."""

    protection: RecordProtection
    final_flight: FinalFlight


def take_over(
    connection: SSL.Connection, sent_flight: bytes, highest_received: int
) -> Switchover | None:
    """Build the record layer of a connection whose handshake just completed.

    ``sent_flight`` is what OpenSSL wrote when the handshake completed,
    the server's ChangeCipherSpec and Finished. ``highest_received`` is
    the highest epoch 1 sequence number that reached OpenSSL (the
    client's Finished), or -1. Returns None, and the caller keeps OpenSSL,
    when the suite is not an AEAD suite of this module. It also returns
    None after an abbreviated handshake, where the server does not send
    the last flight.
    """
    cipher = connection.get_cipher_name()
    suite = suite_for(cipher) if cipher else None
    if suite is None or _lib.SSL_session_reused(connection._ssl):
        return None
    master_secret = connection.master_key()
    client_random = connection.client_random()
    server_random = connection.server_random()
    if not master_secret or not client_random or not server_random:
        return None
    keys = derive_keys(suite, master_secret, client_random, server_random)
    protection = RecordProtection(suite, keys)

    finished: bytes | None = None
    plain_sequence = 0
    for record in iter_records(sent_flight):
        content_type, _, epoch, high, low, _ = RECORD_HEADER.unpack_from(record)
        sequence = high << 32 | low
        if epoch == 0:
            plain_sequence = max(plain_sequence, sequence + 1)
        elif epoch == FIRST_EPOCH and content_type == CONTENT_HANDSHAKE:
            protection.write_sequence = max(protection.write_sequence, sequence + 1)
            finished = protection.open_sent(record)
    if not finished or finished[0] != HANDSHAKE_FINISHED:
        # Keys that cannot open our own Finished are wrong keys.
        return None
    if highest_received >= 0:
        protection.window.accept_up_to(highest_received)
    return Switchover(protection, FinalFlight(finished, plain_sequence))
