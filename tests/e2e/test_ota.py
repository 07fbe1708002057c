"""A firmware update end to end, against the real ``fleetgate serve``.

A release is rolled out through the management API to a device that
observes ``.u/desired`` with the reference client, which receives the
new manifest. ``coap-client-openssl`` then reads the manifest, downloads
the image block-wise and posts a component report as Golioth's firmware
SDK encodes it, and the API shows the reported state.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import cbor2
import httpx
import pytest
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from fleetgate.client import CBOR, DeviceClient
from fleetgate.client import ota as device_ota

from .conftest import (
    RunningServer,
    coap_client,
    fleetgate,
    requires_coap_client,
    start_server,
    stop_server,
)
from .test_first_device import make_recipe_pki

pytestmark = [pytest.mark.e2e]

PROJECT = "acme-sensors"
CERT_ID = "sensor-0001"
# Large enough for about 1300 blocks of 1024 bytes across many chunks.
IMAGE_BYTES = 1_300_000


@pytest.fixture
def api_server(data_dir: Path) -> Iterator[RunningServer]:
    running = start_server(data_dir)
    yield running
    stop_server(running)


def api_client(server: RunningServer, key: str | None) -> httpx.Client:
    assert server.api_url is not None
    return httpx.Client(
        base_url=server.api_url, headers={"x-api-key": key or ""}, timeout=30
    )


def observe_manifest(device: DeviceClient) -> Message:
    message = Message(code=Code.GET)
    message.mtype = Type.CON
    message.mid = 1
    message.token = b"\x0a\x11"
    message.opt.uri_path = (".u", "desired")
    message.opt.observe = 0
    message.opt.accept = CBOR
    device.channel.send(message.encode())
    record = device.channel.receive(5.0)
    assert record is not None, "no response to the observe registration"
    return Message.decode(record)


@requires_coap_client
def test_rollout_download_and_report(
    api_server: RunningServer, data_dir: Path, tmp_path: Path
) -> None:
    recipe = tmp_path / "pki"
    make_recipe_pki(recipe, PROJECT, CERT_ID)
    cert, key = recipe / "device.pem", recipe / "device.key"
    image = os.urandom(IMAGE_BYTES)
    base = f"/v1/projects/{PROJECT}"

    with api_client(api_server, api_server.admin_key) as admin:
        assert admin.post("/v1/projects", json={"id": PROJECT}).status_code == 200
    project_key = fleetgate(data_dir, "apikey", "create", "--project", PROJECT)
    with api_client(api_server, project_key.stdout.strip()) as api:
        root = base64.b64encode((recipe / "root.pem").read_bytes()).decode()
        ca = api.post(
            f"{base}/certificates", json={"certFile": root, "certType": "root"}
        )
        assert ca.status_code == 200, ca.text
        device_id = api.post(f"{base}/devices", json={"name": CERT_ID}).json()["data"][
            "id"
        ]

        with DeviceClient(
            "127.0.0.1", api_server.port, cert, key, api_server.server_ca
        ) as device:
            registration = observe_manifest(device)
            assert registration.code is Code.CONTENT
            assert cbor2.loads(registration.payload)[3] == []

            artifact = api.post(
                f"{base}/artifacts",
                params={"package": "main", "version": "1.2.0"},
                content=image,
                headers={"content-type": "application/octet-stream"},
            ).json()["data"]
            release = api.post(
                f"{base}/releases",
                json={"name": "spring", "artifactIds": [artifact["id"]]},
            ).json()["data"]
            rollout = api.post(
                f"{base}/releases/{release['id']}/rollout",
                json={"deviceIds": [device_id]},
            )
            assert rollout.status_code == 200, rollout.text

            record = device.channel.receive(5.0)
            assert record is not None, "no notification of the rollout"
            notification = Message.decode(record)
            notified = device_ota.parse_manifest(notification.payload)

        assert notification.opt.observe > registration.opt.observe
        component = notified.component("main")
        assert component is not None
        assert component.sha256 == hashlib.sha256(image).hexdigest()
        assert component.size == IMAGE_BYTES

        # libcoap's client reads the manifest and downloads the image.
        manifest_file = tmp_path / "manifest.cbor"
        read = coap_client(
            api_server,
            ".u/desired",
            cert=cert,
            key=key,
            accept=CBOR,
            output_file=manifest_file,
        )
        assert manifest_file.exists(), read.output
        fetched = device_ota.parse_manifest(manifest_file.read_bytes())
        assert fetched.component("main") == component

        firmware = tmp_path / "firmware.bin"
        download = coap_client(
            api_server,
            component.uri.lstrip("/"),
            cert=cert,
            key=key,
            output_file=firmware,
            block_size=1024,
            timeout=60,
        )
        assert firmware.exists(), download.output
        downloaded = firmware.read_bytes()
        assert len(downloaded) == component.size
        assert hashlib.sha256(downloaded).hexdigest() == component.sha256

        report = tmp_path / "report.cbor"
        report.write_bytes(
            cbor2.dumps({"s": 2, "r": 0, "pkg": "main", "v": "1.0.0", "t": "1.2.0"})
        )
        posted = coap_client(
            api_server,
            ".u/c/main",
            cert=cert,
            key=key,
            method="post",
            payload_file=report,
            content_format=CBOR,
        )
        assert "4." not in posted.stdout, posted.output

        state = api.get(f"{base}/devices/{device_id}/firmware").json()["data"]
        other = coap_client(api_server, ".u/c/main@9.9.9", cert=cert, key=key)

    assert state["components"][0]["stateName"] == "downloaded"
    assert state["components"][0]["targetVersion"] == "1.2.0"
    assert state["desired"]["components"][0]["sha256"] == component.sha256
    assert "4.04" in other.output
    assert "artifact download started" in api_server.log()
    assert stop_server(api_server) == 0
