"""In-process notifications of LightDB State changes.

:data:`state_changes` calls its listeners with the device ID and the
path of every change that :mod:`fleetgate.store.state` commits, whoever
made it: the management API, a device over CoAP or the command line.
The gateway's Observe layer listens, so that an observing device learns
of a change made through the API.

Limitation: only changes made in this process are published. Under
``fleetgate serve --workers N``, :class:`fleetgate.gateway.channel.ChangeRelay`
carries them between the parent and the workers. A change made by
another ``fleetgate serve`` on a shared PostgreSQL database, or by the
``fleetgate`` command line while ``fleetgate serve`` runs, reaches an
observing device only when it reads the value again or reconnects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# Receives the device ID and the changed path (empty for the whole document).
StateListener = Callable[[str, tuple[str, ...]], None]


class ChangeFeed:
    """Listeners called, in the publishing thread, after each committed change."""

    def __init__(self) -> None:
        self._listeners: list[StateListener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: StateListener) -> Callable[[], None]:
        """Add ``listener`` and return a function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, device_id: str, path: tuple[str, ...]) -> None:
        """Call every listener; one that raises is logged and the rest still run."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(device_id, path)
            except Exception:
                log.exception(
                    "state change listener failed device=%s path=/%s",
                    device_id,
                    "/".join(path),
                )


state_changes = ChangeFeed()

# Receives a project ID and the device ID as a one-step path, or an empty
# path for a change of the project's settings, after each committed change
# that :mod:`fleetgate.store.settings` makes. The same limitation applies.
settings_changes = ChangeFeed()

# Receives a project ID and the device ID as a one-step path, or an empty
# path when any device of the project may be affected, after each
# committed rollout or rollback of :mod:`fleetgate.store.ota_releases`.
# The same limitation applies.
ota_changes = ChangeFeed()
