"""Firmware updates on ``.u``: manifests, block-wise downloads and reports.

The device side sends what Golioth's firmware SDK sends: an observing
GET of ``.u/desired`` with Accept CBOR, Block2 GETs of a component's URI
and CBOR reports to ``.u/c/<package>``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import cbor2
import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption
from fastapi.testclient import TestClient

from fleetgate.api.app import create_app
from fleetgate.client import CBOR, JSON, DeviceClient
from fleetgate.client import ota as device_ota
from fleetgate.config import DeviceRateLimits
from fleetgate.store import apikeys, devices, ota_artifacts, ota_releases, ota_reports
from fleetgate.store.database import Database
from fleetgate.store.projects import create_project

from .conftest import PROJECT, FleetPki, GatewayFactory, GatewayThread, connect

TOKEN = b"\x07\x7a"


@pytest.fixture
def device(gateway: GatewayThread, pki: FleetPki) -> Iterator[DeviceClient]:
    client = connect(gateway, pki.device("sensor-1"))
    with client:
        assert client.request("GET", ".d").successful
        yield client


@pytest.fixture
def api(database: Database, pki: FleetPki) -> Iterator[TestClient]:
    key = apikeys.create_api_key(database, PROJECT, actor="test")
    with TestClient(
        create_app(database),
        headers={"x-api-key": key.secret},
        raise_server_exceptions=False,
    ) as client:
        yield client


def device_id(database: Database) -> str:
    return devices.list_devices(database, PROJECT, exact_name="sensor-1").items[0].id


def roll_out(
    database: Database, content: bytes, version: str = "1.2.3", package: str = "main"
) -> ota_artifacts.ArtifactRecord:
    artifact = ota_artifacts.upload_artifact(
        database, PROJECT, package, version, content
    )
    release = ota_releases.create_release(
        database, PROJECT, f"release-{package}-{version}", [artifact.id]
    )
    ota_releases.roll_out(database, PROJECT, release.id, all_devices=True)
    return artifact


def receive(device: DeviceClient, timeout: float = 3.0) -> Message:
    record = device.channel.receive(timeout)
    assert record is not None, "no CoAP message within the timeout"
    return Message.decode(record)


def observe_manifest(device: DeviceClient) -> Message:
    message = Message(code=Code.GET)
    message.mtype = Type.CON
    message.mid = 1
    message.token = TOKEN
    message.opt.uri_path = (".u", "desired")
    message.opt.observe = 0
    message.opt.accept = CBOR
    device.channel.send(message.encode())
    return receive(device)


class TestManifest:
    def test_no_release_is_empty_manifest(self, device: DeviceClient) -> None:
        reply = device.request("GET", ".u/desired", accept=CBOR)
        body = cbor2.loads(reply.payload)
        assert reply.code is Code.CONTENT
        assert reply.content_format == CBOR
        assert body[1] == 0
        assert body[3] == []

    def test_component_has_every_key_the_sdk_parses(
        self, device: DeviceClient, database: Database
    ) -> None:
        artifact = roll_out(database, b"firmware image")
        body = cbor2.loads(device.request("GET", ".u/desired", accept=CBOR).payload)
        assert body[3] == [
            {
                1: "main",
                2: "1.2.3",
                3: artifact.sha256,
                4: len(b"firmware image"),
                5: "/.u/c/main@1.2.3",
                6: "mcuboot",
            }
        ]
        assert len(body[2]) == 64

    def test_json_manifest_names_keys(
        self, device: DeviceClient, database: Database
    ) -> None:
        roll_out(database, b"image")
        reply = device.request("GET", ".u/desired", accept=JSON)
        assert reply.content_format == JSON
        assert b'"sequenceNumber"' in reply.payload

    def test_large_manifest_goes_block_wise(
        self, device: DeviceClient, database: Database
    ) -> None:
        artifacts = [
            ota_artifacts.upload_artifact(database, PROJECT, f"pkg-{i}", "1.0", b"x")
            for i in range(12)
        ]
        release = ota_releases.create_release(
            database, PROJECT, "many", [item.id for item in artifacts]
        )
        ota_releases.roll_out(database, PROJECT, release.id, all_devices=True)
        first = device.request("GET", ".u/desired", accept=CBOR)
        manifest = device_ota.fetch_manifest(device)
        assert first.block2 is not None
        assert first.block2.more
        assert len(manifest.components) == 12

    def test_post_is_not_allowed(self, device: DeviceClient) -> None:
        reply = device.request("POST", ".u/desired", b"{}")
        assert reply.code is Code.METHOD_NOT_ALLOWED


class TestObserve:
    def test_api_rollout_notifies_observer(
        self, device: DeviceClient, api: TestClient, database: Database
    ) -> None:
        first = observe_manifest(device)
        content = os.urandom(5000)
        artifact = ota_artifacts.upload_artifact(
            database, PROJECT, "main", "2.0.0", content
        )
        created = api.post(
            f"/v1/projects/{PROJECT}/releases",
            json={"name": "r2", "artifactIds": [artifact.id]},
        ).json()["data"]
        response = api.post(
            f"/v1/projects/{PROJECT}/releases/{created['id']}/rollout",
            json={"deviceIds": [device_id(database)]},
        )
        notification = receive(device)
        manifest = device_ota.parse_manifest(notification.payload)
        assert response.status_code == 200
        assert first.opt.observe is not None
        assert notification.token == TOKEN
        assert notification.opt.observe > first.opt.observe
        assert manifest.component("main") is not None
        assert manifest.sequence > cbor2.loads(first.payload)[1]

    def test_rollout_to_another_device_is_not_notified(
        self, device: DeviceClient, database: Database
    ) -> None:
        observe_manifest(device)
        other = devices.create_device(database, PROJECT, "sensor-2").id
        artifact = ota_artifacts.upload_artifact(database, PROJECT, "main", "3", b"x")
        release = ota_releases.create_release(database, PROJECT, "r3", [artifact.id])
        ota_releases.roll_out(database, PROJECT, release.id, device_ids=[other])
        assert device.channel.receive(0.5) is None


class TestDownload:
    def test_download_matches_sha256(
        self, device: DeviceClient, database: Database
    ) -> None:
        content = os.urandom(2 * ota_artifacts.CHUNK_BYTES + 3000)
        roll_out(database, content)
        component = device_ota.fetch_manifest(device).component("main")
        assert component is not None
        image = device_ota.download_component(device, component)
        assert hashlib.sha256(image).hexdigest() == component.sha256
        assert image == content

    def test_small_blocks_download_too(
        self, device: DeviceClient, database: Database
    ) -> None:
        content = os.urandom(1500)
        roll_out(database, content)
        component = device_ota.fetch_manifest(device).component("main")
        assert component is not None
        assert device_ota.download_component(device, component, szx=2) == content

    def test_first_block_carries_size_and_etag(
        self, device: DeviceClient, database: Database
    ) -> None:
        content = os.urandom(4000)
        artifact = roll_out(database, content)
        reply = device.request(
            "GET", ".u/c/main@1.2.3", block2=BlockOption.BlockwiseTuple(0, False, 6)
        )
        assert reply.content_format == 42
        assert reply.size2 == 4000
        assert reply.etag == bytes.fromhex(artifact.sha256)[:8]
        assert reply.block2 == BlockOption.BlockwiseTuple(0, True, 6)
        assert reply.payload == content[:1024]

    def test_block_past_end_is_bad_option(
        self, device: DeviceClient, database: Database
    ) -> None:
        roll_out(database, os.urandom(2000))
        reply = device.request(
            "GET", ".u/c/main@1.2.3", block2=BlockOption.BlockwiseTuple(5, False, 6)
        )
        assert reply.code is Code.BAD_OPTION

    def test_block_past_end_names_artifact(
        self, device: DeviceClient, database: Database
    ) -> None:
        roll_out(database, os.urandom(5000), version="1.1.0")
        reply = device.request(
            "GET", ".u/c/main@1.1.0", block2=BlockOption.BlockwiseTuple(5, False, 6)
        )
        assert b"end of the 5000-byte artifact main@1.1.0" in reply.payload
        assert reply.block2 is None
        assert reply.etag is None

    @pytest.mark.parametrize(
        "path",
        [
            pytest.param(".u/c/absent@1.2.3", id="fail/unknown-package"),
            pytest.param(".u/c/main@9.9.9", id="fail/wrong-version"),
        ],
    )
    def test_unknown_artifact_is_not_found(
        self, device: DeviceClient, database: Database, path: str
    ) -> None:
        roll_out(database, b"image")
        assert device.request("GET", path).code is Code.NOT_FOUND

    def test_other_project_artifact_is_not_found(
        self, device: DeviceClient, database: Database
    ) -> None:
        create_project(database, "other")
        ota_artifacts.upload_artifact(database, "other", "secret", "1.0", b"x")
        assert device.request("GET", ".u/c/secret@1.0").code is Code.NOT_FOUND


class TestReport:
    def test_report_is_stored(self, device: DeviceClient, database: Database) -> None:
        reply = device_ota.report_state(
            device,
            "main",
            device_ota.DOWNLOADING,
            current="1.0.0",
            target="1.2.3",
        )
        latest = ota_reports.latest_reports(database, PROJECT, device_id(database))
        assert reply.code is Code.CHANGED
        assert [
            (r.package, r.state, r.current_version, r.target_version) for r in latest
        ] == [("main", 1, "1.0.0", "1.2.3")]

    @pytest.mark.parametrize(
        ("payload", "message"),
        [
            pytest.param(b"\xff\x00garbage", b"invalid CBOR", id="fail/garbage"),
            pytest.param(cbor2.dumps([1, 2]), b"must be a map", id="fail/not-a-map"),
            pytest.param(
                cbor2.dumps({"s": 9, "r": 0, "pkg": "main"}),
                b"s must be a state",
                id="fail/unknown-state",
            ),
            pytest.param(
                cbor2.dumps({"s": 0, "r": "x", "pkg": "main"}),
                b"r must be a reason",
                id="fail/text-reason",
            ),
            pytest.param(
                cbor2.dumps({"s": 0, "r": 99, "pkg": "main"}),
                b"r must be a reason from 0 to 9, not 99",
                id="fail/unknown-reason",
            ),
            pytest.param(
                cbor2.dumps({"s": 0, "r": 0, "pkg": "main"}) + b"\x00",
                b"1 bytes follow the CBOR item",
                id="fail/trailing-bytes",
            ),
            pytest.param(
                cbor2.dumps({"s": 0, "r": 0, "pkg": "other"}),
                b"differs from the package",
                id="fail/package-mismatch",
            ),
            pytest.param(
                cbor2.dumps({"s": 0, "r": 0, "pkg": "main", "v": 7}),
                b"v must be a version",
                id="fail/number-version",
            ),
            pytest.param(
                cbor2.dumps({"s": 0, "r": 0, "pkg": "main", "t": "v" * 40}),
                b"invalid version",
                id="fail/long-version",
            ),
        ],
    )
    def test_bad_report_is_rejected(
        self,
        device: DeviceClient,
        database: Database,
        payload: bytes,
        message: bytes,
    ) -> None:
        reply = device.request("POST", ".u/c/main", payload, content_format=CBOR)
        assert reply.code is Code.BAD_REQUEST
        assert message in reply.payload
        assert ota_reports.latest_reports(database, PROJECT, device_id(database)) == []

    def test_flood_gets_too_many_requests(
        self, start_gateway: GatewayFactory, pki: FleetPki, database: Database
    ) -> None:
        limits = DeviceRateLimits(report_rate=0.5, report_burst=2)
        gateway = start_gateway(rate_limits=limits)
        body = cbor2.dumps({"s": 1, "r": 0, "pkg": "main"})
        with connect(gateway, pki.device("sensor-1")) as client:
            replies = [
                client.request("POST", ".u/c/main", body, content_format=CBOR)
                for _ in range(4)
            ]

        history = ota_reports.report_history(database, PROJECT, device_id(database))
        assert [reply.code for reply in replies[:2]] == [Code.CHANGED] * 2
        assert replies[2].code is Code.TOO_MANY_REQUESTS
        assert replies[2].max_age == 2
        assert history.total == 2

    def test_invalid_package_in_path_is_rejected(self, device: DeviceClient) -> None:
        body = cbor2.dumps({"s": 0, "r": 0, "pkg": "a b"})
        reply = device.request("POST", ".u/c/a b", body, content_format=CBOR)
        assert reply.code is Code.BAD_REQUEST
