"""A short-lived cache of each project's trust anchors for the handshake path.

Chain verification runs inside OpenSSL's verification callback, on the
event loop, for every handshake; a database round trip there would
stall every other session. Anchors are therefore read once per project
and kept for ``ttl`` seconds. A CA certificate disabled, deleted or added
through another process takes effect within that time; one changed
through this process's own API is dropped from the cache at once by
:meth:`TrustCache.invalidate`.

While the database is unreachable, a project's last anchors are served
again, and reloaded at most once per ``ttl``. A project not seen since
the process started cannot be verified then: its handshakes fail with
an internal_error alert.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from fleetgate.errors import StoreUnavailable
from fleetgate.pki.verify import ProjectTrust

log = logging.getLogger(__name__)

DEFAULT_TTL = 2.0
# Projects whose anchors are held at once; the oldest entry is dropped
# first. Unknown project IDs are cached too, so that a flood of chains
# naming random projects costs one query per name, not one per handshake.
MAX_PROJECTS = 10_000

TrustLoader = Callable[[str], ProjectTrust | None]


class TrustCache:
    """Serves :class:`ProjectTrust` per project from memory, reloading when stale."""

    def __init__(self, load: TrustLoader, *, ttl: float = DEFAULT_TTL) -> None:
        self._load = load
        self._ttl = ttl
        self._entries: collections.OrderedDict[
            str, tuple[float, ProjectTrust | None]
        ] = collections.OrderedDict()
        self._lock = threading.Lock()

    def anchors_for(self, project_id: str) -> ProjectTrust | None:
        """Return the project's anchors and policy, or None for an unknown project."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(project_id)
            if entry is not None and now - entry[0] < self._ttl:
                self._entries.move_to_end(project_id)
                return entry[1]

        try:
            trust = self._load(project_id)
        except StoreUnavailable:
            if entry is None:
                raise
            # Finish the handshake on the anchors last read, so the device
            # learns from a 5.03 that the outage is temporary. Nothing is
            # served meanwhile, since association needs the database too.
            trust = entry[1]

        with self._lock:
            self._entries[project_id] = (now, trust)
            self._entries.move_to_end(project_id)
            while len(self._entries) > MAX_PROJECTS:
                self._entries.popitem(last=False)
        return trust

    def invalidate(self, project_id: str | None = None) -> None:
        """Forget one project's anchors, or every project's when None."""
        with self._lock:
            if project_id is None:
                self._entries.clear()
            else:
                self._entries.pop(project_id, None)
