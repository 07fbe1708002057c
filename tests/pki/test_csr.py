"""load_device_csr: what a device's CSR must be before it is signed."""

from __future__ import annotations

import logging

import pytest

from fleetgate.errors import InvalidCsr
from fleetgate.pki.csr import DeviceIdentity, load_device_csr

DEVICE = DeviceIdentity(project_id="acme", certificate_id="dev-1", device_id="d1")


def test_garbage_is_rejected_in_plain_words(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fleetgate.pki.csr")

    with pytest.raises(InvalidCsr) as caught:
        load_device_csr(b"\x02\x01\x05", DEVICE)

    assert caught.value.message == "cannot read CSR: not a DER PKCS#10 request"
    assert "ParseError" in caplog.text
