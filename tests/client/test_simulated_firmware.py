"""The simulated device's firmware updates against the in-process gateway.

Manifests are built here, so that a wrong hash or a missing image can
be offered; the images are real artifacts served block-wise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from aiocoap.numbers.codes import Code

from fleetgate.client import CBOR
from fleetgate.client.observing import Notification, ObservingClient
from fleetgate.client.simulated_firmware import (
    FirmwareRebootRequired,
    SimulatedFirmware,
)
from fleetgate.store import ota_artifacts
from gateway.conftest import FAST_TRANSMISSION, PROJECT, FleetPki, GatewayThread

IMAGE = bytes(range(256)) * 9  # three blocks of 1024 bytes, the last short


class Recorder:
    """Collects what the firmware flow reports, as the simulator's sink would."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, kind: str, message: str, **details: Any) -> None:
        self.events.append((kind, message, details))

    def reports(self) -> list[tuple[str, str, str]]:
        """Return (state, reason, version) of each component report."""
        return [
            (details["state"], details["reason"], details["version"])
            for kind, _, details in self.events
            if kind == "ota" and "state" in details
        ]

    def warnings(self) -> list[str]:
        return [message for kind, message, _ in self.events if kind == "warning"]


@pytest.fixture
def device(gateway: GatewayThread, pki: FleetPki) -> Iterator[ObservingClient]:
    assert gateway.identity.root_path is not None
    files = pki.device("sensor-1")
    client = ObservingClient(
        "127.0.0.1",
        gateway.port,
        files.cert,
        files.key,
        gateway.identity.root_path,
        timeout=3.0,
        transmission=FAST_TRANSMISSION,
    )
    with client:
        yield client


@pytest.fixture
def artifact_uri(pki: FleetPki) -> str:
    record = ota_artifacts.upload_artifact(pki.db, PROJECT, "main", "1.1.0", IMAGE)
    return record.uri


def manifest(uri: str, *, sha256: str | None = None, size: int = len(IMAGE)) -> bytes:
    component = {
        1: "main",
        2: "1.1.0",
        3: sha256 or hashlib.sha256(IMAGE).hexdigest(),
        4: size,
        5: uri,
        6: "mcuboot",
    }
    return cbor2.dumps({1: 7, 2: "0" * 64, 3: [component]})


def notification(payload: bytes) -> Notification:
    return Notification(".u/desired", Code.CONTENT, payload, CBOR, 1)


def test_update_reboots_into_new_version(
    device: ObservingClient, artifact_uri: str
) -> None:
    firmware = SimulatedFirmware("main", "1.0.0")
    recorder = Recorder()

    with pytest.raises(FirmwareRebootRequired):
        firmware.take_manifest(device, notification(manifest(artifact_uri)), recorder)

    assert firmware.version == "1.1.0"
    assert recorder.reports() == [
        ("downloading", "ready", "1.0.0"),
        ("downloaded", "ready", "1.0.0"),
        ("updating", "ready", "1.0.0"),
    ]
    assert recorder.warnings() == []


def test_first_start_after_update_reports_success(
    device: ObservingClient, artifact_uri: str
) -> None:
    firmware = SimulatedFirmware("main", "1.0.0")
    with pytest.raises(FirmwareRebootRequired):
        firmware.take_manifest(device, notification(manifest(artifact_uri)), Recorder())
    recorder = Recorder()

    reply = firmware.start(device, recorder)
    again = Recorder()
    firmware.start(device, again)

    assert reply.code is Code.CONTENT
    assert recorder.reports() == [
        ("updating", "firmware_updated_successfully", "1.1.0"),
        ("idle", "ready", "1.1.0"),
    ]
    assert again.reports() == [("idle", "ready", "1.1.0")]


def test_wrong_hash_is_integrity_failure(
    device: ObservingClient, artifact_uri: str
) -> None:
    firmware = SimulatedFirmware("main", "1.0.0")
    recorder = Recorder()

    firmware.take_manifest(
        device, notification(manifest(artifact_uri, sha256="ab" * 32)), recorder
    )

    assert firmware.version == "1.0.0"
    assert recorder.reports() == [
        ("downloading", "ready", "1.0.0"),
        ("idle", "integrity_check_failure", "1.0.0"),
    ]


def test_missing_image_is_update_failure(
    device: ObservingClient, pki: FleetPki
) -> None:
    firmware = SimulatedFirmware("main", "1.0.0")
    recorder = Recorder()

    firmware.take_manifest(device, notification(manifest("/.u/c/main@9.9.9")), recorder)

    assert firmware.version == "1.0.0"
    assert recorder.reports()[-1] == ("idle", "firmware_update_failed", "1.0.0")


def test_same_version_is_left_alone(device: ObservingClient, artifact_uri: str) -> None:
    firmware = SimulatedFirmware("main", "1.1.0")
    recorder = Recorder()

    firmware.take_manifest(device, notification(manifest(artifact_uri)), recorder)

    assert recorder.reports() == []
    assert firmware.version == "1.1.0"


def test_invalid_manifest_is_ignored(device: ObservingClient) -> None:
    firmware = SimulatedFirmware("main", "1.0.0")
    recorder = Recorder()

    firmware.take_manifest(device, notification(cbor2.dumps([1, 2])), recorder)

    assert recorder.reports() == []
    assert len(recorder.warnings()) == 1
