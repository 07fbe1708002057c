"""PSK credentials: create, list, delete, and the sealed key at rest."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, update

from fleetgate.errors import Conflict, InvalidInput, NotFound, Reason
from fleetgate.store import audit, devices, psk
from fleetgate.store.database import Database
from fleetgate.store.models import PskCredential
from fleetgate.store.projects import create_project
from fleetgate.store.sealing import KeyEncryptionKey, SealedValueUnreadable

KEY = bytes(range(32))


@pytest.fixture
def kek(tmp_path: Path) -> KeyEncryptionKey:
    return KeyEncryptionKey.load_or_create(tmp_path / "kek")


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, "acme")
    create_project(database, "other")
    return database


@pytest.fixture
def device_id(db: Database) -> str:
    return devices.create_device(db, "acme", "sensor-1").id


def test_credential_is_created_with_given_key(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    issued = psk.create_psk_credential(
        db, kek, "acme", device_id, identity="s1@acme", key=KEY, actor="cli"
    )
    assert issued.key == KEY
    assert issued.generated is False
    assert issued.record.identity == "s1@acme"
    assert issued.record.device_id == device_id
    assert issued.record.last_used_at is None


def test_generated_key_is_printable_and_long(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    first = psk.create_psk_credential(db, kek, "acme", device_id)
    second = psk.create_psk_credential(db, kek, "acme", device_id)
    assert first.generated is True
    assert len(first.key) == psk.GENERATED_KEY_LENGTH
    assert first.key.decode("ascii").isalnum()
    assert first.key != second.key


def test_generated_identity_names_device_and_project(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    issued = psk.create_psk_credential(db, kek, "acme", device_id)
    parsed = psk.parse_psk_identity(issued.record.identity)
    assert parsed.project_id == "acme"
    assert parsed.psk_id.endswith("-sensor-1")


def test_generated_identities_do_not_collide(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    identities = {
        psk.create_psk_credential(db, kek, "acme", device_id).record.identity
        for _ in range(3)
    }
    assert len(identities) == 3


def test_stored_column_is_not_the_key(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    issued = psk.create_psk_credential(
        db, kek, "acme", device_id, identity="s1@acme", key=KEY
    )
    with db.session(read_only=True) as session:
        row = session.get(PskCredential, issued.record.id)
        assert row is not None
        sealed, key_id = row.sealed_key, row.key_encryption_key_id
    assert KEY not in sealed
    assert KEY.hex() not in sealed.hex()
    assert key_id == kek.key_id
    assert len(sealed) == len(KEY) + 12 + 16


def test_sealed_key_opens_to_the_key(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    psk.create_psk_credential(db, kek, "acme", device_id, identity="s1@acme", key=KEY)
    [loaded] = psk.load_sealed_credentials(db)
    assert loaded.open_key(kek) == KEY


def test_swapped_ciphertexts_fail_to_open(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    first = psk.create_psk_credential(
        db, kek, "acme", device_id, identity="s1@acme", key=KEY
    )
    second = psk.create_psk_credential(
        db, kek, "acme", device_id, identity="s2@acme", key=KEY[::-1]
    )
    with db.session() as session:
        rows = {
            row.id: row.sealed_key for row in session.scalars(select(PskCredential))
        }
        for own, other in ((first, second), (second, first)):
            session.execute(
                update(PskCredential)
                .where(PskCredential.id == own.record.id)
                .values(sealed_key=rows[other.record.id])
            )

    for loaded in psk.load_sealed_credentials(db):
        with pytest.raises(SealedValueUnreadable):
            loaded.open_key(kek)


def test_credential_moved_to_another_device_fails_to_open(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    issued = psk.create_psk_credential(
        db, kek, "acme", device_id, identity="s1@acme", key=KEY
    )
    other_device = devices.create_device(db, "acme", "sensor-2").id
    with db.session() as session:
        session.execute(
            update(PskCredential)
            .where(PskCredential.id == issued.record.id)
            .values(device_id=other_device)
        )
    [loaded] = psk.load_sealed_credentials(db)
    with pytest.raises(SealedValueUnreadable):
        loaded.open_key(kek)


def test_another_key_encryption_key_fails_to_open(
    db: Database, kek: KeyEncryptionKey, device_id: str, tmp_path: Path
) -> None:
    psk.create_psk_credential(db, kek, "acme", device_id, identity="s1@acme", key=KEY)
    replacement = KeyEncryptionKey.load_or_create(tmp_path / "other-kek")
    [loaded] = psk.load_sealed_credentials(db)
    with pytest.raises(SealedValueUnreadable):
        loaded.open_key(replacement)


def test_device_may_hold_several_credentials(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    psk.create_psk_credential(db, kek, "acme", device_id, identity="a@acme")
    psk.create_psk_credential(db, kek, "acme", device_id, identity="b@acme")
    listed = psk.list_psk_credentials(db, "acme", device_id)
    assert [record.identity for record in listed] == ["a@acme", "b@acme"]


def test_taken_identity_is_conflict(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    psk.create_psk_credential(db, kek, "acme", device_id, identity="a@acme")
    with pytest.raises(Conflict):
        psk.create_psk_credential(db, kek, "acme", device_id, identity="a@acme")


def test_identity_of_another_project_is_rejected(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        psk.create_psk_credential(db, kek, "acme", device_id, identity="a@other")
    assert caught.value.reason is Reason.INVALID_PSK_IDENTITY


def test_device_of_another_project_is_not_found(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    with pytest.raises(NotFound):
        psk.create_psk_credential(db, kek, "other", device_id)
    with pytest.raises(NotFound):
        psk.list_psk_credentials(db, "other", device_id)


def test_credential_of_another_project_is_not_found(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    issued = psk.create_psk_credential(db, kek, "acme", device_id)
    with pytest.raises(NotFound):
        psk.get_psk_credential(db, "other", issued.record.id)
    with pytest.raises(NotFound):
        psk.delete_psk_credential(db, "other", issued.record.id)
    assert psk.get_psk_credential(db, "acme", issued.record.id) == issued.record


def test_delete_removes_and_audits(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    issued = psk.create_psk_credential(db, kek, "acme", device_id, actor="cli")
    psk.delete_psk_credential(db, "acme", issued.record.id, actor="cli")

    assert psk.list_psk_credentials(db, "acme", device_id) == []
    actions = [entry.action for entry in audit.list_audit_entries(db, "acme").items]
    assert "psk.create" in actions
    assert "psk.delete" in actions


def test_audit_holds_no_key(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    psk.create_psk_credential(
        db, kek, "acme", device_id, identity="s1@acme", key=KEY, actor="cli"
    )
    [entry] = [
        e
        for e in audit.list_audit_entries(db, "acme").items
        if e.action == "psk.create"
    ]
    assert KEY.hex() not in str(entry.details)
    assert entry.details["identity"] == "s1@acme"


def test_deleting_device_deletes_its_credentials(
    db: Database, kek: KeyEncryptionKey, device_id: str
) -> None:
    psk.create_psk_credential(db, kek, "acme", device_id)
    devices.delete_device(db, "acme", device_id)
    assert psk.load_sealed_credentials(db) == []


@pytest.mark.parametrize(
    ("hex_key", "fragment"),
    [
        pytest.param(bytes(range(1, 16)).hex(), "15 bytes", id="fail/short"),
        pytest.param("ab" * 65, "64 bytes", id="fail/long"),
        pytest.param("61" * 32, "distinct byte values", id="fail/repeated"),
        pytest.param("0102" * 16, "distinct byte values", id="fail/pattern"),
        pytest.param("not hex at all", "not hexadecimal", id="fail/not-hex"),
        pytest.param("abc", "odd number of hex digits (3)", id="fail/odd-length"),
        pytest.param("abz", "not hexadecimal", id="fail/odd-length-not-hex"),
    ],
)
def test_weak_key_is_rejected(hex_key: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        psk.decode_psk(hex_key)
    assert caught.value.reason is Reason.WEAK_PSK
    assert fragment in caught.value.message


def test_random_key_is_accepted() -> None:
    key = os.urandom(16)
    assert psk.decode_psk(key.hex()) == key


@pytest.mark.parametrize(
    "identity",
    [
        pytest.param("sensor-1", id="fail/no-at"),
        pytest.param("@acme", id="fail/empty-psk-id"),
        pytest.param("sensor 1@acme", id="fail/space"),
        pytest.param("sensor-1@Acme", id="fail/project-case"),
        pytest.param("a" * 65 + "@acme", id="fail/long-psk-id"),
        pytest.param("s@" + "a" * 127, id="fail/long-identity"),
    ],
)
def test_malformed_identity_is_rejected(identity: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        psk.parse_psk_identity(identity)
    assert caught.value.reason is Reason.INVALID_PSK_IDENTITY


def test_identity_is_split_at_last_at() -> None:
    parsed = psk.parse_psk_identity("20261204-sensor_1.a:b+c@acme-sensors")
    assert parsed.psk_id == "20261204-sensor_1.a:b+c"
    assert parsed.project_id == "acme-sensors"


class TestKeyEncryptionKey:
    def test_file_is_private(self, tmp_path: Path) -> None:
        path = tmp_path / "data" / "kek"
        KeyEncryptionKey.load_or_create(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(path.read_bytes()) == 32

    def test_existing_file_is_kept(self, tmp_path: Path) -> None:
        path = tmp_path / "kek"
        first = KeyEncryptionKey.load_or_create(path)
        second = KeyEncryptionKey.load_or_create(path)
        assert first.key_id == second.key_id

    def test_concurrent_creators_share_one_key(self, tmp_path: Path) -> None:
        path = tmp_path / "kek"
        barrier = threading.Barrier(8, timeout=10)
        keys: list[str] = []

        def create() -> None:
            barrier.wait()
            keys.append(KeyEncryptionKey.load_or_create(path).key_id)

        threads = [threading.Thread(target=create) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert len(keys) == 8
        assert len(set(keys)) == 1
        assert [p.name for p in tmp_path.iterdir()] == ["kek"]

    def test_missing_file_names_the_fix(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidInput, match="restore it from a backup"):
            KeyEncryptionKey.load(tmp_path / "missing")

    def test_truncated_file_is_rejected(self, tmp_path: Path) -> None:
        path = tmp_path / "kek"
        path.write_bytes(b"short")
        with pytest.raises(InvalidInput, match="has 5 bytes"):
            KeyEncryptionKey.load(path)

    def test_key_is_not_in_repr(self, tmp_path: Path) -> None:
        path = tmp_path / "kek"
        kek = KeyEncryptionKey.load_or_create(path)
        assert path.read_bytes().hex() not in repr(kek)

    def test_altered_value_fails_to_open(self, kek: KeyEncryptionKey) -> None:
        sealed = bytearray(kek.seal(b"secret", b"row-1"))
        sealed[-1] ^= 1
        with pytest.raises(SealedValueUnreadable):
            kek.open(bytes(sealed), b"row-1")
