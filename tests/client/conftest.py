"""Client tests run against the in-process gateway of the gateway tests."""

from __future__ import annotations

from gateway.conftest import (  # noqa: F401  (fixtures used by name)
    gateway,
    pki,
    psk_key,
    server_identity,
    start_gateway,
)
