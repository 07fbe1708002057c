"""The key-encryption key that seals device secrets stored in the database.

Pre-shared keys must be read back in clear to run a DTLS PSK handshake,
so they cannot be hashed like API keys. Each one is encrypted with
AES-256-GCM under a key-encryption key that lives in a file of the data
folder, outside the database: a copy of the database alone (a backup,
a replica, a leaked dump) does not reveal the keys.

The caller passes associated data naming the row (its ID, project,
device and identity), so a sealed value copied into another row fails
to open instead of authenticating another device.

The file contains the 32 key bytes and nothing else. It is created once,
with mode 0600, by writing a temporary file and linking it into place,
so two processes starting together never replace each other's key.
Losing the file makes every sealed value unreadable for good.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fleetgate.errors import FleetgateError, InvalidInput, Reason

log = logging.getLogger(__name__)

KEY_BYTES = 32
# A random 96-bit nonce per seal (NIST SP 800-38D, section 8.2.2). Fewer
# than 2^32 seals under one key keep the chance of a repeat negligible.
NONCE_BYTES = 12
TAG_BYTES = 16


class SealedValueUnreadable(FleetgateError):
    """A sealed value does not open: another key sealed it, or it was altered."""

    reason = Reason.PSK_UNREADABLE


class KeyEncryptionKey:
    """An AES-256-GCM key that seals and opens small secrets."""

    def __init__(self, key: bytes, *, path: Path | None = None) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(
                f"a key-encryption key has {KEY_BYTES} bytes, not {len(key)}"
            )
        self._aead = AESGCM(key)
        self.path = path
        # Names the key in stored rows and messages without revealing it.
        self.key_id = hashlib.sha256(b"fleetgate-kek-id" + key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<KeyEncryptionKey {self.key_id}>"

    @classmethod
    def load(cls, path: Path) -> KeyEncryptionKey:
        """Read the key file at ``path``, or raise InvalidInput naming the fix."""
        try:
            key = path.read_bytes()
        except FileNotFoundError as exc:
            raise InvalidInput(
                f"cannot read the key-encryption key {path}: it does not "
                "exist; restore it from a backup, or delete the PSK "
                "credentials and create them again"
            ) from exc
        except OSError as exc:
            raise InvalidInput(
                f"cannot read the key-encryption key {path}: {exc.strerror}"
            ) from exc
        if len(key) != KEY_BYTES:
            raise InvalidInput(
                f"cannot use the key-encryption key {path}: it has {len(key)} "
                f"bytes, expected {KEY_BYTES}; restore it from a backup"
            )
        return cls(key, path=path)

    @classmethod
    def load_or_create(cls, path: Path) -> KeyEncryptionKey:
        """Read the key file at ``path``, creating it with a new key if missing."""
        if not path.exists():
            try:
                _create_key_file(path)
            except OSError as exc:
                raise InvalidInput(
                    f"cannot create the key-encryption key {path}: "
                    f"{exc.strerror}; pass --data-dir with a folder you can "
                    "write to"
                ) from exc
        return cls.load(path)

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``associated_data``, nonce first."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def open(self, sealed: bytes, associated_data: bytes) -> bytes:
        """Decrypt what :meth:`seal` returned for the same associated data."""
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise SealedValueUnreadable(
                f"cannot open a sealed value of {len(sealed)} bytes: it is "
                "shorter than a nonce and a tag"
            )
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, associated_data)
        except InvalidTag as exc:
            raise SealedValueUnreadable(
                "cannot open a sealed value: it was sealed under another "
                f"key-encryption key than {self.key_id}, or for another row, "
                "or it was altered"
            ) from exc


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(KEY_BYTES))
            file.flush()
            os.fsync(file.fileno())
        try:
            # link() fails when the name exists, so a key that another
            # process created first is kept, never overwritten.
            os.link(temporary, path)
        except FileExistsError:
            return
        # The new name must survive a crash, or the keys sealed next would
        # outlive the only key that opens them.
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        log.info("created key-encryption key file=%s", path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
