"""OTA artifacts, releases, desired manifests and component reports."""

from __future__ import annotations

import hashlib
import os

import pytest

from fleetgate.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, Reason
from fleetgate.store import devices, ota_artifacts, ota_releases, ota_reports
from fleetgate.store.changes import ota_changes
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project

PROJECT = "acme"


@pytest.fixture
def db(database: Database) -> Database:
    create_project(database, PROJECT)
    create_project(database, "other")
    return database


def device(db: Database, name: str, tags: list[str] | None = None) -> str:
    return devices.create_device(db, PROJECT, name, tags=tags or []).id


def artifact(
    db: Database, version: str, package: str = "main", size: int = 100
) -> ota_artifacts.ArtifactRecord:
    return ota_artifacts.upload_artifact(
        db, PROJECT, package, version, os.urandom(size)
    )


class TestArtifacts:
    def test_upload_computes_size_and_hash(self, db: Database) -> None:
        content = os.urandom(200_000)
        record = ota_artifacts.upload_artifact(db, PROJECT, "main", "1.0.0", content)
        assert record.size == len(content)
        assert record.sha256 == hashlib.sha256(content).hexdigest()
        assert record.uri == "/.u/c/main@1.0.0"

    def test_chunks_join_to_the_image(self, db: Database) -> None:
        content = os.urandom(3 * ota_artifacts.CHUNK_BYTES + 17)
        record = ota_artifacts.upload_artifact(db, PROJECT, "main", "1.0.0", content)
        joined = ota_artifacts.read_content(db, PROJECT, record.id)
        last = ota_artifacts.read_chunk(db, record.id, 3)
        assert joined == content
        assert last == content[3 * ota_artifacts.CHUNK_BYTES :]

    def test_same_version_twice_conflicts(self, db: Database) -> None:
        artifact(db, "1.0.0")
        with pytest.raises(Conflict, match="already has this package version"):
            artifact(db, "1.0.0")

    def test_too_large_is_rejected(self, db: Database) -> None:
        with pytest.raises(PayloadTooLarge, match="exceed the maximum of 10"):
            ota_artifacts.upload_artifact(
                db, PROJECT, "main", "1.0.0", b"x" * 11, max_bytes=10
            )

    @pytest.mark.parametrize(
        ("package", "version"),
        [
            pytest.param("main@x", "1.0", id="fail/at-in-package"),
            pytest.param("a/b", "1.0", id="fail/slash-in-package"),
            pytest.param("p" * 33, "1.0", id="fail/long-package"),
            pytest.param("main", "", id="fail/empty-version"),
            pytest.param("main", "1.0/2", id="fail/slash-in-version"),
            pytest.param("main", "v" * 33, id="fail/long-version"),
        ],
    )
    def test_bad_names_are_rejected(
        self, db: Database, package: str, version: str
    ) -> None:
        with pytest.raises(InvalidInput):
            ota_artifacts.upload_artifact(db, PROJECT, package, version, b"x")

    def test_other_project_cannot_see_artifact(self, db: Database) -> None:
        record = artifact(db, "1.0.0")
        with pytest.raises(NotFound):
            ota_artifacts.get_artifact(db, "other", record.id)

    def test_artifact_in_release_cannot_be_deleted(self, db: Database) -> None:
        record = artifact(db, "1.0.0")
        ota_releases.create_release(db, PROJECT, "r1", [record.id])
        with pytest.raises(Conflict) as caught:
            ota_artifacts.delete_artifact(db, PROJECT, record.id)
        assert caught.value.reason is Reason.ARTIFACT_IN_USE
        assert "'r1'" in caught.value.message

    def test_delete_removes_artifact(self, db: Database) -> None:
        record = artifact(db, "1.0.0")
        ota_artifacts.delete_artifact(db, PROJECT, record.id, actor="test")
        assert ota_artifacts.list_artifacts(db, PROJECT) == []


class TestReleases:
    def test_one_artifact_per_package(self, db: Database) -> None:
        first, second = artifact(db, "1.0.0"), artifact(db, "1.0.1")
        with pytest.raises(InvalidInput, match="names package 'main' twice"):
            ota_releases.create_release(db, PROJECT, "r1", [first.id, second.id])

    def test_other_project_artifact_is_not_found(self, db: Database) -> None:
        foreign = ota_artifacts.upload_artifact(db, "other", "main", "1.0", b"x")
        with pytest.raises(NotFound):
            ota_releases.create_release(db, PROJECT, "r1", [foreign.id])

    def test_rollout_needs_one_kind_of_target(self, db: Database) -> None:
        release = ota_releases.create_release(db, PROJECT, "r1", [artifact(db, "1").id])
        with pytest.raises(InvalidInput, match="not both and not neither"):
            ota_releases.roll_out(db, PROJECT, release.id)

    def test_rollout_to_other_project_device_is_not_found(self, db: Database) -> None:
        foreign = devices.create_device(db, "other", "sensor-9").id
        release = ota_releases.create_release(db, PROJECT, "r1", [artifact(db, "1").id])
        with pytest.raises(NotFound):
            ota_releases.roll_out(db, PROJECT, release.id, device_ids=[foreign])

    def test_rolled_out_release_cannot_be_deleted(self, db: Database) -> None:
        release = ota_releases.create_release(db, PROJECT, "r1", [artifact(db, "1").id])
        ota_releases.roll_out(db, PROJECT, release.id, all_devices=True)
        with pytest.raises(Conflict, match="roll it back first"):
            ota_releases.delete_release(db, PROJECT, release.id)


class TestDesiredManifest:
    def test_no_release_gives_empty_manifest(self, db: Database) -> None:
        manifest = ota_releases.desired_manifest(db, PROJECT, device(db, "s1"))
        assert manifest.components == ()
        assert manifest.sequence == 0

    def test_project_rollout_reaches_every_device(self, db: Database) -> None:
        first, second = device(db, "s1"), device(db, "s2")
        image = artifact(db, "1.0.0")
        release = ota_releases.create_release(db, PROJECT, "r1", [image.id])
        ota_releases.roll_out(db, PROJECT, release.id, all_devices=True)
        for device_id in (first, second):
            manifest = ota_releases.desired_manifest(db, PROJECT, device_id)
            assert manifest.components == (image,)

    def test_device_rollout_reaches_only_listed(self, db: Database) -> None:
        listed, other = device(db, "s1"), device(db, "s2")
        release = ota_releases.create_release(db, PROJECT, "r1", [artifact(db, "1").id])
        ota_releases.roll_out(db, PROJECT, release.id, device_ids=[listed])
        assert ota_releases.desired_manifest(db, PROJECT, listed).components
        assert not ota_releases.desired_manifest(db, PROJECT, other).components

    def test_tag_rollout_reaches_tagged(self, db: Database) -> None:
        tagged, plain = device(db, "s1", ["beta"]), device(db, "s2")
        release = ota_releases.create_release(db, PROJECT, "r1", [artifact(db, "1").id])
        ota_releases.roll_out(db, PROJECT, release.id, tags=["beta"])
        assert ota_releases.desired_manifest(db, PROJECT, tagged).components
        assert not ota_releases.desired_manifest(db, PROJECT, plain).components

    def test_latest_rollout_wins_and_rollback_falls_back(self, db: Database) -> None:
        device_id = device(db, "s1")
        old, new = artifact(db, "1.0.0"), artifact(db, "2.0.0")
        first = ota_releases.create_release(db, PROJECT, "r1", [old.id])
        second = ota_releases.create_release(db, PROJECT, "r2", [new.id])
        ota_releases.roll_out(db, PROJECT, first.id, all_devices=True)
        ota_releases.roll_out(db, PROJECT, second.id, device_ids=[device_id])
        updated = ota_releases.desired_manifest(db, PROJECT, device_id)
        ota_releases.roll_back(db, PROJECT, second.id)
        reverted = ota_releases.desired_manifest(db, PROJECT, device_id)
        assert updated.components == (new,)
        assert reverted.components == (old,)
        assert reverted.sequence > updated.sequence

    def test_sequence_increases_on_each_change(self, db: Database) -> None:
        device_id = device(db, "s1")
        release = ota_releases.create_release(db, PROJECT, "r1", [artifact(db, "1").id])
        seen = []
        for _ in range(2):
            ota_releases.roll_out(db, PROJECT, release.id, all_devices=True)
            seen.append(ota_releases.desired_manifest(db, PROJECT, device_id).sequence)
            ota_releases.roll_back(db, PROJECT, release.id)
            seen.append(ota_releases.desired_manifest(db, PROJECT, device_id).sequence)
        assert seen == sorted(set(seen))

    def test_digest_follows_components(self, db: Database) -> None:
        device_id = device(db, "s1")
        release = ota_releases.create_release(db, PROJECT, "r1", [artifact(db, "1").id])
        empty = ota_releases.desired_manifest(db, PROJECT, device_id).digest
        ota_releases.roll_out(db, PROJECT, release.id, all_devices=True)
        full = ota_releases.desired_manifest(db, PROJECT, device_id).digest
        assert len(full) == 64
        assert full != empty


class TestChangeFeed:
    def test_device_rollout_publishes_each_device(self, db: Database) -> None:
        first, second = device(db, "s1"), device(db, "s2")
        release = ota_releases.create_release(db, PROJECT, "r1", [artifact(db, "1").id])
        published: list[tuple[str, tuple[str, ...]]] = []
        unsubscribe = ota_changes.subscribe(lambda p, s: published.append((p, s)))
        try:
            ota_releases.roll_out(db, PROJECT, release.id, device_ids=[first])
            ota_releases.roll_out(db, PROJECT, release.id, device_ids=[second])
        finally:
            unsubscribe()
        assert published == [
            (PROJECT, (first,)),
            *sorted([(PROJECT, (first,)), (PROJECT, (second,))]),
        ]

    def test_project_rollback_publishes_project(self, db: Database) -> None:
        release = ota_releases.create_release(db, PROJECT, "r1", [artifact(db, "1").id])
        ota_releases.roll_out(db, PROJECT, release.id, all_devices=True)
        published: list[tuple[str, tuple[str, ...]]] = []
        unsubscribe = ota_changes.subscribe(lambda p, s: published.append((p, s)))
        try:
            ota_releases.roll_back(db, PROJECT, release.id)
        finally:
            unsubscribe()
        assert published == [(PROJECT, ())]


class TestReports:
    def test_latest_per_package_and_history(self, db: Database) -> None:
        device_id = device(db, "s1")
        for package, state in [("main", 0), ("main", 1), ("modem", 0), ("main", 2)]:
            ota_reports.add_report(
                db,
                project_id=PROJECT,
                device_id=device_id,
                package=package,
                state=state,
                reason=0,
                current_version="1.0.0",
                target_version="2.0.0",
            )
        latest = ota_reports.latest_reports(db, PROJECT, device_id)
        history = ota_reports.report_history(db, PROJECT, device_id, package="main")
        assert [(r.package, r.state_name) for r in latest] == [
            ("main", "downloaded"),
            ("modem", "idle"),
        ]
        assert [r.state for r in history.items] == [2, 1, 0]
        assert history.total == 3

    def test_other_project_device_is_not_found(self, db: Database) -> None:
        foreign = devices.create_device(db, "other", "sensor-9").id
        with pytest.raises(NotFound):
            ota_reports.latest_reports(db, PROJECT, foreign)
