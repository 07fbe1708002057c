"""The simulated device's firmware updates, run as the SDK's ``fw_update.c`` runs them.

At each session start the device reports its component ``idle`` and
``ready`` with its current version on ``.u/c/<package>``, then observes
``.u/desired``. The first session after an update reports ``updating``
with reason ``firmware updated successfully`` before that. When a
manifest names another version of the package, the device reports
``downloading``, fetches the image block-wise, checks its size and
SHA-256, reports ``downloaded`` and ``updating``, and reboots into the
new version. A failed download is reported ``idle`` with reason
``firmware update failed``, a wrong image ``idle`` with ``integrity
check failure``, and the device stays on its version.

Nothing is flashed: the image is checked and dropped, and only its
version is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetgate.client import CBOR, ota
from fleetgate.client.coap import CoapReply
from fleetgate.client.errors import RequestRejected
from fleetgate.client.observing import Notification, ObservingClient
from fleetgate.store.ota_reports import ComponentReason, ComponentState

Emit = Callable[..., None]


class FirmwareRebootRequired(Exception):
    """A new image was checked; the device reboots into its version."""


class SimulatedFirmware:
    """The version of one firmware package and the flow that updates it."""

    def __init__(self, package: str = "main", version: str = "1.0.0") -> None:
        self.package = package
        self.version = version
        self._just_updated = False

    def start(self, client: ObservingClient, emit: Emit) -> CoapReply:
        """Report the component's state and observe the manifest; return its reply."""
        if self._just_updated:
            self._report(
                client,
                emit,
                ComponentState.UPDATING,
                ComponentReason.FIRMWARE_UPDATED_SUCCESSFULLY,
            )
            self._just_updated = False
        self._report(client, emit, ComponentState.IDLE, ComponentReason.READY)
        return client.observe(ota.MANIFEST_PATH, accept=CBOR)

    def take_manifest(
        self, client: ObservingClient, notification: Notification, emit: Emit
    ) -> None:
        """Update to the manifest's version of the package, if it differs.

        Raises FirmwareRebootRequired once the new image is checked.
        """
        try:
            manifest = ota.parse_manifest(notification.payload)
        except ota.ManifestInvalid as exc:
            emit("warning", f"ignored manifest: {exc}")
            return
        component = manifest.component(self.package)
        if component is None or component.version == self.version:
            emit(
                "ota",
                f"manifest {manifest.sequence}: nothing new for {self.package} "
                f"{self.version}",
                sequence=manifest.sequence,
            )
            return

        target = component.version
        self._report(
            client, emit, ComponentState.DOWNLOADING, ComponentReason.READY, target
        )
        try:
            image = ota.download_component(client, component)
        except ota.IntegrityCheckFailed as exc:
            emit("warning", str(exc))
            self._report(
                client,
                emit,
                ComponentState.IDLE,
                ComponentReason.INTEGRITY_CHECK_FAILURE,
                target,
            )
            return
        except RequestRejected as exc:
            emit("warning", str(exc))
            self._report(
                client,
                emit,
                ComponentState.IDLE,
                ComponentReason.FIRMWARE_UPDATE_FAILED,
                target,
            )
            return
        emit(
            "ota",
            f"downloaded {component.package}@{target}, {len(image)} bytes, "
            "SHA-256 checked",
            package=component.package,
            version=target,
            size=len(image),
        )
        for state in (ComponentState.DOWNLOADED, ComponentState.UPDATING):
            self._report(client, emit, state, ComponentReason.READY, target)
        self.version = target
        self._just_updated = True
        raise FirmwareRebootRequired(target)

    def _report(
        self,
        client: ObservingClient,
        emit: Emit,
        state: ComponentState,
        reason: ComponentReason,
        target: str | None = None,
    ) -> None:
        reply = ota.report_state(
            client,
            self.package,
            int(state),
            reason=int(reason),
            current=self.version,
            target=target,
        )
        details: dict[str, Any] = {
            "package": self.package,
            "state": state.name.lower(),
            "reason": reason.name.lower(),
            "version": self.version,
        }
        if target is not None:
            details["target"] = target
        emit(
            "ota",
            f"{self.package} {state.name.lower()} ({reason.name.lower()}), "
            f"version {self.version}" + (f", target {target}" if target else ""),
            **details,
        )
        if not reply.successful:
            emit(
                "warning",
                f"cannot report {self.package} {state.name.lower()}: the server "
                f"responded {reply.code.dotted}",
            )
