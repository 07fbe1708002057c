"""A short-lived cache of each project's trust anchors for the handshake path.

Chain verification runs inside OpenSSL's verification callback, on the
event loop, for every handshake; a database round trip there would
stall every other session. Anchors are therefore read once per project
and kept for ``ttl`` seconds. A CA certificate disabled, deleted or added
through another process takes effect within that time; one changed
through this process's own API is dropped from the cache at once by
:meth:`TrustCache.invalidate`. Given a version reader, the cache reads
only a cheap summary of the project's trust when ``ttl`` has passed, and
loads the anchors again only when that summary changed.

While the database is unreachable, a project's last anchors are served
again, and reloaded at most once per ``ttl``. A project not seen since
the process started cannot be verified then: its handshakes fail with
an internal_error alert.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Hashable

from fleetgate.errors import StoreUnavailable
from fleetgate.pki.verify import ProjectTrust

log = logging.getLogger(__name__)

DEFAULT_TTL = 2.0
# Projects whose anchors are held at once; the oldest entry is dropped
# first. Unknown project IDs are cached too, so that a flood of chains
# naming random projects costs one query per name, not one per handshake.
MAX_PROJECTS = 10_000

TrustLoader = Callable[[str], ProjectTrust | None]
# Returns a value that changes whenever the loader's result would.
VersionReader = Callable[[str], Hashable]


@dataclasses.dataclass(frozen=True)
class _Entry:
    checked_at: float
    trust: ProjectTrust | None
    # None without a version reader, or when the store was down.
    version: Hashable


class TrustCache:
    """Serves :class:`ProjectTrust` per project from memory, reloading when stale."""

    def __init__(
        self,
        load: TrustLoader,
        *,
        ttl: float = DEFAULT_TTL,
        version: VersionReader | None = None,
    ) -> None:
        self._load = load
        self._read_version = version
        self._ttl = ttl
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._lock = threading.Lock()

    def anchors_for(self, project_id: str) -> ProjectTrust | None:
        """Return the project's anchors and policy, or None for an unknown project."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(project_id)
            if entry is not None and now - entry.checked_at < self._ttl:
                self._entries.move_to_end(project_id)
                return entry.trust

        version: Hashable = None
        try:
            # Read before the anchors: a change in between only costs
            # one more load at the next check.
            if self._read_version is not None:
                version = self._read_version(project_id)
            if entry is not None and version is not None and version == entry.version:
                trust = entry.trust
            else:
                trust = self._load(project_id)
        except StoreUnavailable:
            if entry is None:
                raise
            # Finish the handshake on the anchors last read, so the device
            # learns from a 5.03 that the outage is temporary. Nothing is
            # served meanwhile, since association needs the database too.
            trust = entry.trust
            version = None

        with self._lock:
            self._entries[project_id] = _Entry(now, trust, version)
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
