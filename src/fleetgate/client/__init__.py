"""The reference device client: CoAP over DTLS 1.2 with a certificate or a PSK.

It plays a device the way Golioth's firmware SDK does, so that the
gateway can be tested and measured without hardware, and it backs the
device-side commands. Synchronous and single-threaded by design::

    with DeviceClient("127.0.0.1", 5684, "device.pem", "device.key",
                      "server-ca.pem") as device:
        reply = device.request("GET", ".d/sensor", accept=CBOR)

    psk = PskCredentials("sensor-1@acme-sensors", key)
    with DeviceClient("127.0.0.1", 5684, psk=psk) as device:
        ...

:mod:`~fleetgate.client.context` loads the credentials and checks the
server, :mod:`~fleetgate.client.dtls` runs the DTLS session over a UDP
socket, :mod:`~fleetgate.client.coap` the CoAP message layer on top of
it, and :mod:`~fleetgate.client.errors` draws the exception tree.
"""

from __future__ import annotations

from fleetgate.client.coap import CoapReply, DeviceClient, TransmissionParameters
from fleetgate.client.context import (
    DEFAULT_CIPHERS,
    DEFAULT_PSK_CIPHERS,
    DeviceCredentials,
    PskCredentials,
    build_client_context,
    build_psk_context,
)
from fleetgate.client.dtls import COAPS_PORT, DEFAULT_MTU, ChannelState, DtlsChannel
from fleetgate.client.errors import (
    ClientError,
    ClientTimeout,
    CredentialsError,
    HandshakeFailed,
    HandshakeRefused,
    HandshakeTimeout,
    RequestRejected,
    RequestTimeout,
    ServerNotTrusted,
    ServerUnreachable,
    SessionClosed,
)

# CoAP Content-Formats a device commonly sends (RFC 7252 12.3, RFC 8949).
TEXT_PLAIN = 0
OCTET_STREAM = 42
JSON = 50
CBOR = 60

__all__ = [
    "CBOR",
    "COAPS_PORT",
    "DEFAULT_CIPHERS",
    "DEFAULT_MTU",
    "DEFAULT_PSK_CIPHERS",
    "JSON",
    "OCTET_STREAM",
    "TEXT_PLAIN",
    "ChannelState",
    "ClientError",
    "ClientTimeout",
    "CoapReply",
    "CredentialsError",
    "DeviceClient",
    "DeviceCredentials",
    "DtlsChannel",
    "HandshakeFailed",
    "HandshakeRefused",
    "HandshakeTimeout",
    "PskCredentials",
    "RequestRejected",
    "RequestTimeout",
    "ServerNotTrusted",
    "ServerUnreachable",
    "SessionClosed",
    "TransmissionParameters",
    "build_client_context",
    "build_psk_context",
]
