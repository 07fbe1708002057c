"""A device listed in a CRL loaded with ``fleetgate ca crl`` is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from fleetgate.client import DeviceClient, HandshakeRefused
from fleetgate.pki import tools

from .conftest import fleetgate, start_server, stop_server

pytestmark = [pytest.mark.e2e]

PROJECT = "crl-e2e"


def issue(
    folder: Path, name: str, key: tools.PrivateKey, root: x509.Certificate
) -> x509.Certificate:
    device_key = tools.make_device_key()
    csr = tools.make_device_csr(device_key, PROJECT, name)
    certificate = tools.sign_device_csr(csr, key, root)
    tools.write_certificate(folder / f"{name}.pem", certificate)
    tools.write_private_key(folder / f"{name}.key", device_key)
    return certificate


def test_revoked_device_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pki = tmp_path / "pki"
    pki.mkdir()
    root_key, root = tools.make_root()
    tools.write_certificate(pki / "root.pem", root)
    revoked = issue(pki, "revoked-1", root_key, root)
    issue(pki, "good-1", root_key, root)
    fleetgate(data_dir, "project", "create", PROJECT)
    uploaded = fleetgate(
        data_dir, "ca", "upload", "--project", PROJECT, str(pki / "root.pem")
    )
    match = re.search(r"CA certificate ([0-9a-f]{24})", uploaded.stdout)
    assert match is not None, uploaded.stdout

    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(revoked.not_valid_before_utc)
        .next_update(revoked.not_valid_after_utc)
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(revoked.serial_number)
            .revocation_date(revoked.not_valid_before_utc)
            .build()
        )
        .sign(root_key, tools.signature_hash_for(root_key))
    )
    (pki / "root.crl").write_bytes(crl.public_bytes(Encoding.PEM))
    loaded = fleetgate(
        data_dir,
        "ca",
        "crl",
        "--project",
        PROJECT,
        match.group(1),
        str(pki / "root.crl"),
    )
    assert "1 revoked" in loaded.stdout

    server = start_server(data_dir, "--no-api")
    try:

        def client(name: str) -> DeviceClient:
            return DeviceClient(
                "127.0.0.1",
                server.port,
                pki / f"{name}.pem",
                pki / f"{name}.key",
                server.server_ca,
                timeout=5.0,
            )

        with pytest.raises(HandshakeRefused) as caught:
            client("revoked-1").connect()
        with client("good-1") as good:
            reply = good.request("GET", ".d")

        assert caught.value.alert == "certificate_revoked"
        assert reply.successful
        assert "reason=revoked" in server.log()
    finally:
        assert stop_server(server) == 0
