"""DTLS handshakes against the in-process gateway: keys, chains, suites, refusals.

Every case runs a real handshake with the reference client, so the
alerts asserted are the ones a device receives.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fleetgate.client import HandshakeRefused
from fleetgate.pki import tools
from fleetgate.store import certificates, devices, projects
from fleetgate.store.database import Database

from .conftest import PROJECT, DeviceFiles, FleetPki, GatewayThread, Issuer, connect


def certificate_ids(db: Database, project: str = PROJECT) -> list[str | None]:
    """Certificate IDs of the project's devices, in store order."""
    return [device.certificate_id for device in devices.list_devices(db, project).items]


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Messages of the WARNING lines that report a refused device."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING
        and "device rejected" in record.getMessage()
    ]


class TestKeyTypes:
    @pytest.mark.parametrize(
        "key_type",
        [
            pytest.param("ec-p256", id="ok/p256"),
            pytest.param("ec-p384", id="ok/p384"),
            pytest.param("rsa2048", id="ok/rsa2048"),
            pytest.param("ed25519", id="ok/ed25519"),
        ],
    )
    def test_key_type_is_accepted(
        self,
        gateway: GatewayThread,
        pki: FleetPki,
        database: Database,
        key_type: tools.KeyType,
    ) -> None:
        device = pki.device(f"sensor-{key_type}", key_type=key_type)

        with connect(gateway, device) as client:
            reply = client.request("GET", ".d")

        assert reply.code.dotted == "2.05"
        assert reply.payload == b"{}"
        assert certificate_ids(database) == [f"sensor-{key_type}"]


class TestChains:
    def test_sent_intermediate_reaches_root(
        self, gateway: GatewayThread, pki: FleetPki, database: Database
    ) -> None:
        intermediate = pki.intermediate()
        device = pki.device("sensor-1", issuer=intermediate, send=(intermediate,))

        with connect(gateway, device) as client:
            reply = client.request("GET", ".d")

        assert reply.code.dotted == "2.05"
        assert certificate_ids(database) == ["sensor-1"]

    def test_registered_intermediate_is_anchor(
        self, gateway: GatewayThread, pki: FleetPki, database: Database
    ) -> None:
        projects.create_project(database, "lab-sensors")
        intermediate = pki.intermediate()
        pki.register(intermediate, "lab-sensors")
        device = pki.device("lab-1", issuer=intermediate, project="lab-sensors")

        with connect(gateway, device) as client:
            reply = client.request("GET", ".d")

        assert reply.code.dotted == "2.05"
        assert certificate_ids(database, "lab-sensors") == ["lab-1"]

    def test_missing_intermediate_is_unknown_ca(
        self, gateway: GatewayThread, pki: FleetPki
    ) -> None:
        intermediate = pki.intermediate()
        device = pki.device("sensor-1", issuer=intermediate)

        with pytest.raises(HandshakeRefused) as refused:
            connect(gateway, device).connect()

        assert refused.value.alert == "unknown_ca"


class TestCipherSuites:
    @pytest.mark.parametrize(
        ("ciphers", "negotiated"),
        [
            pytest.param(
                "ECDHE-ECDSA-AES128-CCM8:@SECLEVEL=0",
                "ECDHE-ECDSA-AES128-CCM8",
                id="ok/ccm8",
            ),
            pytest.param(
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                id="ok/aes128-gcm",
            ),
            pytest.param(
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                id="ok/aes256-gcm",
            ),
            pytest.param(
                "ECDHE-ECDSA-AES128-CCM:@SECLEVEL=0",
                "ECDHE-ECDSA-AES128-CCM",
                id="ok/ccm",
            ),
            pytest.param(
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                id="ok/chacha20",
            ),
        ],
    )
    def test_suite_negotiates(
        self, gateway: GatewayThread, pki: FleetPki, ciphers: str, negotiated: str
    ) -> None:
        device = pki.device("sensor-1")

        with connect(gateway, device, ciphers=ciphers) as client:
            cipher = client.cipher
            reply = client.request("PUT", ".d/mode", b'"eco"', content_format=50)

        assert cipher == negotiated
        assert reply.code.dotted == "2.04"

    def test_default_offer_prefers_ccm8(
        self, gateway: GatewayThread, pki: FleetPki
    ) -> None:
        with connect(gateway, pki.device("sensor-1")) as client:
            assert client.cipher == "ECDHE-ECDSA-AES128-CCM8"


def write_device(
    folder: Path, name: str, key: tools.PrivateKey, certificate: x509.Certificate
) -> DeviceFiles:
    """Write a hand-built device certificate and its key."""
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    tools.write_certificate(cert_path, certificate)
    tools.write_private_key(key_path, key)
    return DeviceFiles(cert_path, key_path)


def hand_built_leaf(
    issuer: Issuer,
    *,
    common_name: str = "sensor-1",
    key: tools.PrivateKey | None = None,
    ca: bool = False,
) -> tuple[tools.PrivateKey, x509.Certificate]:
    """Build a v3 device certificate that breaks one policy rule on request."""
    device_key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, PROJECT),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(device_key.public_key())
        .serial_number(tools.random_serial())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    assert isinstance(issuer.key, ec.EllipticCurvePrivateKey)
    return device_key, builder.sign(issuer.key, hashes.SHA256())


def other_project_device(pki: FleetPki, database: Database) -> DeviceFiles:
    projects.create_project(database, "other-project")
    other_root = Issuer(*tools.make_root("Other Root"))
    pki.register(other_root, "other-project")
    return pki.device("sensor-1", issuer=other_root)


def expired_device(pki: FleetPki, database: Database) -> DeviceFiles:
    started = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    return pki.device("sensor-1", not_before=started, days=10)


def unknown_project_device(pki: FleetPki, database: Database) -> DeviceFiles:
    return pki.device("sensor-1", project="no-such-project")


def weak_rsa_device(pki: FleetPki, database: Database) -> DeviceFiles:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return write_device(pki.folder, "rsa1024", *hand_built_leaf(pki.root, key=key))


def ca_leaf_device(pki: FleetPki, database: Database) -> DeviceFiles:
    return write_device(pki.folder, "ca-leaf", *hand_built_leaf(pki.root, ca=True))


def bad_id_device(pki: FleetPki, database: Database) -> DeviceFiles:
    built = hand_built_leaf(pki.root, common_name="sensor 1")
    return write_device(pki.folder, "bad-id", *built)


class TestRefusals:
    @pytest.mark.parametrize(
        ("make_device", "alert", "reason"),
        [
            pytest.param(
                other_project_device, "unknown_ca", "unknown_ca", id="fail/other-ca"
            ),
            pytest.param(
                unknown_project_device,
                "unknown_ca",
                "unknown_project",
                id="fail/unknown-project",
            ),
            pytest.param(
                expired_device,
                "certificate_expired",
                "expired",
                id="fail/expired-leaf",
            ),
            pytest.param(
                weak_rsa_device, "bad_certificate", "weak_key", id="fail/rsa-1024"
            ),
            pytest.param(
                ca_leaf_device, "bad_certificate", "leaf_is_ca", id="fail/leaf-is-ca"
            ),
            pytest.param(
                bad_id_device,
                "bad_certificate",
                "invalid_certificate_id",
                id="fail/invalid-certificate-id",
            ),
        ],
    )
    def test_refusal_sends_alert_and_logs(
        self,
        gateway: GatewayThread,
        pki: FleetPki,
        database: Database,
        caplog: pytest.LogCaptureFixture,
        make_device: object,
        alert: str,
        reason: str,
    ) -> None:
        assert callable(make_device)
        device = make_device(pki, database)
        caplog.set_level(logging.WARNING, logger="fleetgate")

        with pytest.raises(HandshakeRefused) as refused:
            connect(gateway, device).connect()

        assert refused.value.alert == alert
        lines = refusal_lines(caplog)
        assert len(lines) == 1, lines
        assert f"reason={reason} " in lines[0]
        assert "fingerprint=" in lines[0]
        assert certificate_ids(database) == []
        assert gateway.session_count() == 0

    def test_refusal_spares_other_devices(
        self, gateway: GatewayThread, pki: FleetPki, database: Database
    ) -> None:
        good = pki.device("sensor-good")
        expired = expired_device(pki, database)

        with connect(gateway, good) as client:
            with pytest.raises(HandshakeRefused):
                connect(gateway, expired).connect()
            reply = client.request("GET", ".d")

        assert reply.code.dotted == "2.05"


class TestTrustChanges:
    def test_disabled_ca_refuses_next_handshake(
        self, gateway: GatewayThread, pki: FleetPki, database: Database
    ) -> None:
        intermediate = pki.intermediate()
        device = pki.device("sensor-1", issuer=intermediate, send=(intermediate,))
        for _ in range(2):
            with connect(gateway, device) as client:
                assert client.request("GET", ".d").code.dotted == "2.05"
        (root,) = certificates.list_ca_certificates(database, PROJECT)

        certificates.set_ca_certificate_enabled(database, PROJECT, root.id, False)
        gateway.gateway.trust.invalidate(PROJECT)
        with pytest.raises(HandshakeRefused) as refused:
            connect(gateway, device).connect()

        assert refused.value.alert == "unknown_ca"

    def test_enabled_ca_accepts_next_handshake(
        self, gateway: GatewayThread, pki: FleetPki, database: Database
    ) -> None:
        device = pki.device("sensor-1")
        (root,) = certificates.list_ca_certificates(database, PROJECT)
        certificates.set_ca_certificate_enabled(database, PROJECT, root.id, False)
        gateway.gateway.trust.invalidate(PROJECT)
        with pytest.raises(HandshakeRefused):
            connect(gateway, device).connect()

        certificates.set_ca_certificate_enabled(database, PROJECT, root.id, True)
        gateway.gateway.trust.invalidate(PROJECT)
        with connect(gateway, device) as client:
            reply = client.request("GET", ".d")

        assert reply.code.dotted == "2.05"
