"""Certificate rotation on ``POST v1/csr`` with the real server, end to end.

The device is Debian's ``coap-client-openssl``, posting a DER CSR with
``-m post -t 42 -f csr.der`` as Golioth's SDK does. The project uses the
``local`` provider with the recipe root as its CA, configured through
the store, as ``fleetgate provider set`` does.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from fleetgate.config import Settings
from fleetgate.pki import tools
from fleetgate.providers.local import LocalProvider
from fleetgate.providers.sync import sync_project
from fleetgate.store import issued_certificates, pki_providers
from fleetgate.store.database import Database

from .conftest import (
    RunningServer,
    coap_client,
    fleetgate,
    requires_coap_client,
    start_server,
    stop_server,
)
from .test_first_device import device_ids, make_recipe_pki

pytestmark = [pytest.mark.e2e, requires_coap_client]

PROJECT = "acme-sensors"
CERT_ID = "sensor-0001"
RATE_LIMIT = 2


def open_store(data_dir: Path) -> Database:
    """Open the server's database from the test process."""
    return Database.open(Settings(data_dir=data_dir).resolved_database_url)


def set_local_provider(data_dir: Path, recipe: Path, *, limit: int) -> None:
    """Make the recipe root the project's issuing CA, as ``provider set`` does."""
    provider = LocalProvider(
        (recipe / "root.key").resolve(), (recipe / "root.pem").resolve(), days=30
    )
    db = open_store(data_dir)
    try:
        pki_providers.set_provider_config(
            db,
            PROJECT,
            "local",
            provider.public_settings(),
            status="configured",
            max_rotations_per_hour=limit,
        )
        sync_project(db, PROJECT)
    finally:
        db.dispose()


def subject(project: str | None, certificate_id: str | None) -> x509.Name:
    """Return a subject with the given O and CN, leaving out those that are None."""
    attributes = []
    if project is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, project))
    if certificate_id is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, certificate_id))
    return x509.Name(attributes)


def write_csr(
    folder: Path,
    name: x509.Name,
    key: tools.PrivateKey | None = None,
    *,
    stem: str = "new",
) -> Path:
    """Write a new key and a DER CSR for it; return the CSR path."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(name)
    signed = csr.sign(key, tools.signature_hash_for(key))
    tools.write_private_key(folder / f"{stem}.key", key, overwrite=True)
    path = folder / f"{stem}.csr.der"
    path.write_bytes(signed.public_bytes(Encoding.DER))
    return path


def post_csr(
    server: RunningServer, recipe: Path, csr: Path, out: Path
) -> tuple[str, bytes | None]:
    """POST a CSR as the recipe device; return the output and the body, if any."""
    result = coap_client(
        server,
        "v1/csr",
        cert=recipe / "device.pem",
        key=recipe / "device.key",
        method="post",
        content_format=42,
        payload_file=csr,
        output_file=out,
        verbose=True,
    )
    body = out.read_bytes() if out.exists() else None
    return result.output, body


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    folder = tmp_path / "pki"
    make_recipe_pki(folder, PROJECT, CERT_ID)
    return folder


@pytest.fixture
def project_data(data_dir: Path, recipe: Path) -> Path:
    fleetgate(data_dir, "project", "create", PROJECT)
    fleetgate(data_dir, "ca", "upload", "--project", PROJECT, str(recipe / "root.pem"))
    return data_dir


@pytest.fixture
def local_server(project_data: Path, recipe: Path) -> Iterator[RunningServer]:
    set_local_provider(project_data, recipe, limit=RATE_LIMIT)
    running = start_server(project_data)
    yield running
    stop_server(running)


@pytest.mark.parametrize(
    ("name", "key_type"),
    [
        pytest.param(subject(PROJECT, CERT_ID), "ec-p256", id="ok/full-subject"),
        pytest.param(subject(None, None), "ec-p256", id="ok/empty-subject"),
        pytest.param(subject(None, CERT_ID), "ed25519", id="ok/cn-only-ed25519"),
        pytest.param(subject(PROJECT, CERT_ID), "rsa2048", id="ok/rsa2048"),
    ],
)
def test_rotated_certificate_reconnects_same_device(
    local_server: RunningServer,
    recipe: Path,
    project_data: Path,
    tmp_path: Path,
    name: x509.Name,
    key_type: tools.KeyType,
) -> None:
    coap_client(
        local_server, ".d", cert=recipe / "device.pem", key=recipe / "device.key"
    )
    before = device_ids(project_data, PROJECT)
    csr = write_csr(tmp_path, name, tools.generate_key(key_type))

    output, body = post_csr(local_server, recipe, csr, tmp_path / "new.der")

    assert "2.04" in output, output
    assert body is not None, output
    issued = x509.load_der_x509_certificate(body)
    assert issued.subject == subject(PROJECT, CERT_ID)
    root = x509.load_pem_x509_certificate((recipe / "root.pem").read_bytes())
    issued.verify_directly_issued_by(root)
    tools.write_certificate(tmp_path / "new.pem", issued)

    read = coap_client(
        local_server, ".d", cert=tmp_path / "new.pem", key=tmp_path / "new.key"
    )
    assert read.stdout.strip() == "{}", read.output
    assert device_ids(project_data, PROJECT) == before

    db = open_store(project_data)
    try:
        records = issued_certificates.list_issued_certificates(
            db, PROJECT, before[CERT_ID]
        )
    finally:
        db.dispose()
    assert [r.fingerprint for r in records] == [
        issued.fingerprint(hashes.SHA256()).hex()
    ]
    assert records[0].provider == "local"
    assert "certificate rotated project=acme-sensors" in local_server.log()


def _tampered(folder: Path) -> Path:
    path = write_csr(folder, subject(PROJECT, CERT_ID))
    der = bytearray(path.read_bytes())
    der[-1] ^= 0x01  # the last byte belongs to the signature
    path.write_bytes(bytes(der))
    return path


def _weak_key(folder: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return write_csr(folder, subject(PROJECT, CERT_ID), key)


def _garbage(folder: Path) -> Path:
    path = folder / "garbage.der"
    path.write_bytes(b"\x30\x03not a csr")
    return path


@pytest.mark.parametrize(
    ("make_csr", "code", "reason"),
    [
        pytest.param(
            lambda f: write_csr(f, subject(PROJECT, "sensor-0002")),
            "4.03",
            "csr_wrong_certificate_id",
            id="fail/wrong-cn",
        ),
        pytest.param(
            lambda f: write_csr(f, subject("other-project", CERT_ID)),
            "4.03",
            "csr_wrong_project",
            id="fail/wrong-o",
        ),
        pytest.param(_tampered, "4.00", "bad_csr_signature", id="fail/bad-signature"),
        pytest.param(_weak_key, "4.22", "weak_key", id="fail/rsa1024"),
        pytest.param(_garbage, "4.00", "malformed_csr", id="fail/garbage"),
    ],
)
def test_bad_csr_is_rejected(
    local_server: RunningServer,
    recipe: Path,
    tmp_path: Path,
    make_csr: object,
    code: str,
    reason: str,
) -> None:
    assert callable(make_csr)
    csr = make_csr(tmp_path)

    output, body = post_csr(local_server, recipe, csr, tmp_path / "out.der")

    assert f"c:{code}" in output, output
    assert "cannot" in output, output
    assert f"reason={reason}" in local_server.log()
    assert "certificate rotated" not in local_server.log()


def test_rotation_over_limit_gets_max_age(
    local_server: RunningServer, recipe: Path, tmp_path: Path
) -> None:
    csr = write_csr(tmp_path, subject(PROJECT, CERT_ID))
    for attempt in range(RATE_LIMIT):
        output, _ = post_csr(local_server, recipe, csr, tmp_path / f"{attempt}.der")
        assert "c:2.04" in output, output

    output, body = post_csr(local_server, recipe, csr, tmp_path / "over.der")

    assert "c:4.29" in output, output
    max_age = re.search(r"Max-Age:(\d+)", output)
    assert max_age is not None, output
    assert 3500 < int(max_age[1]) <= 3600
    assert "reason=rate_limited" in local_server.log()


def test_rotation_limit_survives_restart(
    project_data: Path, recipe: Path, tmp_path: Path
) -> None:
    set_local_provider(project_data, recipe, limit=1)
    csr = write_csr(tmp_path, subject(PROJECT, CERT_ID))
    first = start_server(project_data)
    try:
        output, _ = post_csr(first, recipe, csr, tmp_path / "first.der")
    finally:
        stop_server(first)
    assert "c:2.04" in output, output

    second = start_server(project_data)
    try:
        output, _ = post_csr(second, recipe, csr, tmp_path / "second.der")
    finally:
        stop_server(second)
    assert "c:4.29" in output, output


def test_offline_provider_is_not_implemented(
    project_data: Path, recipe: Path, tmp_path: Path
) -> None:
    csr = write_csr(tmp_path, subject(PROJECT, CERT_ID))
    running = start_server(project_data)
    try:
        output, body = post_csr(running, recipe, csr, tmp_path / "out.der")
    finally:
        stop_server(running)

    assert "c:5.01" in output, output
    assert "no issuing PKI provider" in output, output
    assert body is None or body.startswith(b"cannot"), body


def test_get_on_csr_is_not_allowed(local_server: RunningServer, recipe: Path) -> None:
    result = coap_client(
        local_server, "v1/csr", cert=recipe / "device.pem", key=recipe / "device.key"
    )
    assert "4.05" in result.output, result.output


def test_rotate_command_renews_the_device(
    local_server: RunningServer, recipe: Path, project_data: Path, tmp_path: Path
) -> None:
    coap_client(
        local_server, ".d", cert=recipe / "device.pem", key=recipe / "device.key"
    )
    before = device_ids(project_data, PROJECT)
    new_cert, new_key = tmp_path / "rotated.pem", tmp_path / "rotated.key"

    result = fleetgate_device_rotate(local_server, recipe, new_cert, new_key)

    assert result.returncode == 0, result.stdout + result.stderr
    assert stat.S_IMODE(new_key.stat().st_mode) == 0o600
    issued = x509.load_pem_x509_certificate(new_cert.read_bytes())
    assert issued.subject == subject(PROJECT, CERT_ID)
    read = coap_client(local_server, ".d", cert=new_cert, key=new_key)
    assert read.stdout.strip() == "{}", read.output
    assert device_ids(project_data, PROJECT) == before


def test_rotate_command_reports_refusal(
    project_data: Path, recipe: Path, tmp_path: Path
) -> None:
    running = start_server(project_data)
    try:
        result = fleetgate_device_rotate(
            running, recipe, tmp_path / "c.pem", tmp_path / "k.pem"
        )
    finally:
        stop_server(running)

    assert result.returncode == 1
    assert "5.01" in result.stderr, result.stderr
    assert not (tmp_path / "k.pem").exists()


def fleetgate_device_rotate(
    server: RunningServer, recipe: Path, out_cert: Path, out_key: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``fleetgate device rotate`` as the recipe device."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetgate",
            "device",
            "rotate",
            "--cert",
            str(recipe / "device.pem"),
            "--key",
            str(recipe / "device.key"),
            "--server-ca",
            str(server.server_ca),
            "--host",
            "127.0.0.1",
            "--port",
            str(server.port),
            "--out-cert",
            str(out_cert),
            "--out-key",
            str(out_key),
            "--timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
