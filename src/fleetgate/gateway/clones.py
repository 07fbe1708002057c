"""Clone detection: one certificate ID in two live sessions from two addresses.

A genuine device may reconnect from a new address or port, after NAT
rebinding, a reboot or a lost session. Its old session stays open until
it idles out, so two sessions of one certificate ID are normal for a
while. What one device does not do is keep both
talking: once the newer session is established, the old one falls
silent. Two devices that share a key keep both busy.

So a clone is suspected only when, after the newer session was
established, both sessions carry authenticated traffic (records that
decrypted under their session keys), the older one at least
:data:`GRACE_SECONDS` after that moment so that datagrams already in
flight from the old address do not count, and the two within
:data:`WINDOW_SECONDS` of each other. Each pair of sessions is reported
once. The detector only reports: sessions are not closed.

Sessions of one process are compared, so two clones served by two
gateway processes are not detected.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable

Address = tuple[str, int]
# (project ID, certificate ID)
CertificateKey = tuple[str, str]

# Maximum seconds between the traffic of two sessions for them to count
# as live at once. A chosen value, not a measured one: devices that keep
# a session open send keepalives or data more often than this.
WINDOW_SECONDS = 30.0
# Traffic on the older session this soon after the newer one opened may
# be datagrams already in flight, not a second device.
GRACE_SECONDS = 2.0


@dataclasses.dataclass
class _Session:
    address: Address
    opened_at: float
    last_traffic: float | None = None


class CloneDetector:
    """Tracks live sessions per certificate ID and reports likely clones."""

    def __init__(
        self,
        *,
        window: float = WINDOW_SECONDS,
        grace: float = GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._grace = grace
        self._clock = clock
        self._sessions: dict[CertificateKey, dict[Hashable, _Session]] = {}
        self._reported: set[frozenset[Hashable]] = set()

    def opened(self, key: CertificateKey, session: Hashable, address: Address) -> None:
        """Start tracking an established session of ``key``."""
        self._sessions.setdefault(key, {})[session] = _Session(address, self._clock())

    def closed(self, key: CertificateKey, session: Hashable) -> None:
        """Stop tracking a session."""
        live = self._sessions.get(key)
        if live is None:
            return
        live.pop(session, None)
        if not live:
            del self._sessions[key]
        self._reported = {pair for pair in self._reported if session not in pair}

    def traffic(self, key: CertificateKey, session: Hashable) -> list[Address]:
        """Note authenticated traffic; return the addresses it newly clashes with."""
        live = self._sessions.get(key)
        current = live.get(session) if live else None
        if live is None or current is None:
            return []
        now = self._clock()
        current.last_traffic = now
        if len(live) < 2:
            return []

        clashes = []
        for other_id, other in live.items():
            if other_id == session or other.address == current.address:
                continue
            pair = frozenset((session, other_id))
            if pair in self._reported or not self._both_live(current, other):
                continue
            self._reported.add(pair)
            clashes.append(other.address)
        return clashes

    def _both_live(self, first: _Session, second: _Session) -> bool:
        if first.last_traffic is None or second.last_traffic is None:
            return False
        older, newer = sorted((first, second), key=lambda s: s.opened_at)
        assert older.last_traffic is not None and newer.last_traffic is not None
        if older.last_traffic < newer.opened_at + self._grace:
            return False
        if newer.last_traffic < newer.opened_at:
            return False
        return abs(first.last_traffic - second.last_traffic) <= self._window
