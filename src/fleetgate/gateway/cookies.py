"""Handshake cookies that every gateway worker of one server accepts.

With ``fleetgate serve --workers N`` each worker process responds to the
ClientHellos that the kernel hands to its socket. A client's first and
second ClientHello come from the same address and normally reach the
same worker, but they reach different workers when the set of sockets
changes in between (a worker exits or starts). :class:`SharedCookieJar`
derives its secrets from one master secret and the wall-clock period,
so a cookie issued by any worker of the server checks in every other
one. It has the interface of :class:`fleetgate.gateway.records.CookieJar`,
which a single process keeps using.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from fleetgate.gateway.records import CookieJar

# Seconds a secret is current; a cookie stays valid for one to two periods.
ROTATE_SECONDS = 60
MIN_MASTER_SECRET_BYTES = 32


class SharedCookieJar(CookieJar):
    """Issues and checks address-bound cookies under a secret shared by workers.

    The secret of period ``k`` (wall-clock seconds divided by
    ``rotate_seconds``) is an HMAC of ``k`` under the master secret, so
    processes holding the same master secret agree on it without talking.
    """

    def __init__(
        self, master_secret: bytes, *, rotate_seconds: int = ROTATE_SECONDS
    ) -> None:
        if len(master_secret) < MIN_MASTER_SECRET_BYTES:
            raise ValueError(
                f"cookie master secret must have at least {MIN_MASTER_SECRET_BYTES} "
                f"bytes, not {len(master_secret)}"
            )
        if rotate_seconds < 1:
            raise ValueError(f"rotate_seconds must be at least 1, not {rotate_seconds}")
        super().__init__(rotate_seconds=rotate_seconds)
        self._master = master_secret
        self._period_seconds = rotate_seconds
        self._secrets: dict[int, bytes] = {}

    def _secret(self, period: int) -> bytes:
        secret = self._secrets.get(period)
        if secret is None:
            secret = hmac.new(
                self._master, period.to_bytes(8, "big"), hashlib.sha256
            ).digest()
            # Only the current and the previous period are ever asked for.
            self._secrets = {
                key: value for key, value in self._secrets.items() if key >= period - 1
            }
            self._secrets[period] = secret
        return secret

    def _period(self) -> int:
        return int(time.time()) // self._period_seconds

    def _accepted_secrets(self) -> tuple[bytes, bytes]:
        period = self._period()
        return self._secret(period), self._secret(period - 1)
