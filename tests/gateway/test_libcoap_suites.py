"""libcoap's ``coap-client-openssl`` over every AEAD suite the gateway runs itself.

libcoap sets its own cipher list, so each test narrows the gateway's
list to one suite instead. The client runs on Debian's OpenSSL 3, the
gateway on the OpenSSL bundled with cryptography, and after the
handshake the gateway's own record layer (not OpenSSL) protects the
request and the response.
"""

from __future__ import annotations

import logging
import shutil
import subprocess

import pytest

from fleetgate.gateway import tls

from .conftest import FleetPki, GatewayFactory

COAP_CLIENT = shutil.which("coap-client-openssl")

pytestmark = pytest.mark.skipif(
    COAP_CLIENT is None,
    reason="coap-client-openssl (Debian libcoap3-bin) not installed",
)


@pytest.mark.parametrize(
    "cipher",
    [
        pytest.param("ECDHE-ECDSA-AES128-CCM8", id="ccm8"),
        pytest.param("ECDHE-ECDSA-AES128-GCM-SHA256", id="aes128-gcm"),
        pytest.param("ECDHE-ECDSA-AES256-GCM-SHA384", id="aes256-gcm"),
        pytest.param("ECDHE-ECDSA-CHACHA20-POLY1305", id="chacha20"),
    ],
)
def test_put_then_get_over_suite(
    start_gateway: GatewayFactory,
    pki: FleetPki,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cipher: str,
) -> None:
    assert COAP_CLIENT is not None
    monkeypatch.setattr(tls, "CIPHERS", f"{cipher}:@SECLEVEL=0")
    caplog.set_level(logging.DEBUG, logger="fleetgate.gateway.dtls")
    gateway = start_gateway()
    device = pki.device("sensor-1")
    assert gateway.identity.root_path is not None
    base = [
        COAP_CLIENT,
        "-B",
        "5",
        "-c",
        str(device.cert),
        "-j",
        str(device.key),
        "-R",
        str(gateway.identity.root_path),
    ]
    url = f"coaps://127.0.0.1:{gateway.port}/.d/mode"

    put = subprocess.run(
        [*base, "-m", "put", "-t", "50", "-e", '"eco"', url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    get = subprocess.run(
        [*base, "-m", "get", "-A", "50", url],
        capture_output=True,
        text=True,
        timeout=30,
    )

    negotiated = [
        record.getMessage()
        for record in caplog.records
        if "handshake completed" in record.getMessage()
    ]
    assert len(negotiated) == 2
    assert all(f"cipher={cipher}" in message for message in negotiated)
    assert "keeps OpenSSL" not in caplog.text
    # coap-client-openssl exits 0 even on failure: judge by its output.
    assert "WARN" not in put.stderr, put.stderr
    assert get.stdout.strip() == '"eco"', get.stderr
