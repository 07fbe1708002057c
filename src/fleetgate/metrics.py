"""Prometheus metrics of one Fleetgate process, served at ``/metrics``.

Every metric lives in :data:`REGISTRY`, not in prometheus_client's
global registry, so ``/metrics`` shows Fleetgate's figures only. Labels
take values from closed sets (results, :class:`fleetgate.errors.Reason`
codes, CoAP resources the router serves, HTTP route templates), never
from device input, so a misbehaving device cannot grow the number of
series. Each process counts its own traffic: with several processes,
sum their series in Prometheus.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry()

# Seconds. CoAP and API requests mostly take a few milliseconds; the
# upper buckets catch database waits and provider round trips.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

HANDSHAKES = Counter(
    "fleetgate_handshakes",
    "Device handshakes by result (accepted, rejected) and reason code.",
    ["result", "reason"],
    registry=REGISTRY,
)
SESSIONS_ACTIVE = Gauge(
    "fleetgate_sessions_active",
    "Established DTLS sessions.",
    registry=REGISTRY,
)
HANDSHAKES_IN_PROGRESS = Gauge(
    "fleetgate_handshakes_in_progress",
    "DTLS handshakes started with a valid cookie and not yet finished.",
    registry=REGISTRY,
)
SESSIONS_CLOSED = Counter(
    "fleetgate_sessions_closed",
    "Accepted device sessions that ended, by reason code.",
    ["reason"],
    registry=REGISTRY,
)
DEVICES_PROVISIONED = Counter(
    "fleetgate_devices_provisioned",
    "Devices created or adopted on their first authenticated connection.",
    ["how"],
    registry=REGISTRY,
)
CSRS = Counter(
    "fleetgate_csrs",
    "Certificate signing requests by result (issued, rejected) and reason code.",
    ["result", "reason"],
    registry=REGISTRY,
)
COAP_REQUESTS_REFUSED = Counter(
    "fleetgate_coap_requests_refused",
    "Device requests answered with a 4.xx or 5.xx code, by code and reason code.",
    ["code", "reason"],
    registry=REGISTRY,
)
COAP_REQUEST_SECONDS = Histogram(
    "fleetgate_coap_request_duration_seconds",
    "Time to serve a device's CoAP request, by resource, method and code class.",
    ["resource", "method", "code_class"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
HTTP_REQUEST_SECONDS = Histogram(
    "fleetgate_http_request_duration_seconds",
    "Time to serve a management API request, by method, route and status class.",
    ["method", "route", "status_class"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
DATABASE_ERRORS = Counter(
    "fleetgate_database_errors",
    "Transactions that failed because the database was unavailable.",
    registry=REGISTRY,
)
CONNECTION_LOG_DROPPED = Counter(
    "fleetgate_connection_log_dropped",
    "Connection log events lost: the buffer was full or a write failed.",
    registry=REGISTRY,
)
CONNECTION_LOG_UNRECORDED = Counter(
    "fleetgate_connection_log_unrecorded",
    "Refused handshakes counted here instead of written to the connection "
    "log: no existing project, or over the project's limit per minute.",
    ["reason"],
    registry=REGISTRY,
)
CLONES_SUSPECTED = Counter(
    "fleetgate_clones_suspected",
    "Certificate IDs seen in two live sessions from two addresses.",
    registry=REGISTRY,
)


def render() -> tuple[bytes, str]:
    """Return the current metrics in the Prometheus text format, and its type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
