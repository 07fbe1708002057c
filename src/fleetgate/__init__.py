"""Fleetgate: certificate identity for IoT fleets over CoAP/DTLS."""

from __future__ import annotations

__version__ = "0.1.0"
