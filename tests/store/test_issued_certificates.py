"""Issued certificates: recording, listing and the hourly rotation limit."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from fleetgate.errors import NotFound, RateLimited
from fleetgate.pki import issue, tools
from fleetgate.pki.identity import fingerprint
from fleetgate.store.database import Database
from fleetgate.store.devices import create_device, delete_device
from fleetgate.store.issued_certificates import (
    check_rotation_allowed,
    list_issued_certificates,
    record_issued_certificate,
)
from fleetgate.store.projects import create_project

NOW = dt.datetime(2026, 12, 11, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def certificate() -> x509.Certificate:
    ca_key, ca_cert = tools.make_root("Rotation CA")
    csr = tools.make_device_csr(tools.make_device_key(), "acme", "dev-1")
    return issue.issue_client_certificate(
        csr,
        project_id="acme",
        certificate_id="dev-1",
        issuer_key=ca_key,
        issuer_cert=ca_cert,
    )


@pytest.fixture
def device_id(database: Database) -> str:
    create_project(database, "acme")
    return create_device(database, "acme", "dev-1", certificate_id="dev-1").id


def test_record_stores_certificate_fields(
    database: Database, device_id: str, certificate: x509.Certificate
) -> None:
    record = record_issued_certificate(
        database, "acme", device_id, certificate, provider="local", now=NOW
    )
    assert record.serial == format(certificate.serial_number, "x")
    assert record.fingerprint == fingerprint(certificate)
    assert record.not_before == certificate.not_valid_before_utc
    assert record.not_after == certificate.not_valid_after_utc
    assert record.provider == "local"
    assert record.created_at == NOW
    assert list_issued_certificates(database, "acme", device_id) == [record]


def test_list_is_newest_first(
    database: Database, device_id: str, certificate: x509.Certificate
) -> None:
    times = [NOW - dt.timedelta(minutes=m) for m in (30, 10, 20)]
    for created in times:
        record_issued_certificate(
            database, "acme", device_id, certificate, provider="local", now=created
        )
    listed = list_issued_certificates(database, "acme", device_id)
    assert [r.created_at for r in listed] == sorted(times, reverse=True)


def test_list_unknown_device_is_not_found(database: Database, device_id: str) -> None:
    with pytest.raises(NotFound):
        list_issued_certificates(database, "acme", "no-such-device")


def test_record_unknown_device_is_not_found(
    database: Database, device_id: str, certificate: x509.Certificate
) -> None:
    with pytest.raises(NotFound):
        record_issued_certificate(
            database, "acme", "no-such-device", certificate, provider="local"
        )


def test_limit_allows_until_reached(
    database: Database, device_id: str, certificate: x509.Certificate
) -> None:
    for minutes in (50, 40):
        record_issued_certificate(
            database,
            "acme",
            device_id,
            certificate,
            provider="local",
            now=NOW - dt.timedelta(minutes=minutes),
        )
    check_rotation_allowed(database, "acme", device_id, 3, now=NOW)
    with pytest.raises(RateLimited) as caught:
        check_rotation_allowed(database, "acme", device_id, 2, now=NOW)
    # The issuance 50 minutes ago leaves the window in 10 minutes.
    assert caught.value.retry_after == 600
    assert caught.value.coap_code == "4.29"


def test_limit_ignores_issuances_older_than_an_hour(
    database: Database, device_id: str, certificate: x509.Certificate
) -> None:
    record_issued_certificate(
        database,
        "acme",
        device_id,
        certificate,
        provider="local",
        now=NOW - dt.timedelta(minutes=61),
    )
    check_rotation_allowed(database, "acme", device_id, 1, now=NOW)


def test_lowered_limit_waits_for_enough_to_expire(
    database: Database, device_id: str, certificate: x509.Certificate
) -> None:
    for minutes in (50, 40, 30):
        record_issued_certificate(
            database,
            "acme",
            device_id,
            certificate,
            provider="local",
            now=NOW - dt.timedelta(minutes=minutes),
        )
    with pytest.raises(RateLimited) as caught:
        check_rotation_allowed(database, "acme", device_id, 2, now=NOW)
    # Two must leave before a third fits: the one from 40 minutes ago
    # leaves in 20 minutes.
    assert caught.value.retry_after == 1200


def test_limit_counts_per_device(
    database: Database, device_id: str, certificate: x509.Certificate
) -> None:
    other = create_device(database, "acme", "dev-2", certificate_id="dev-2").id
    record_issued_certificate(
        database, "acme", other, certificate, provider="local", now=NOW
    )
    check_rotation_allowed(database, "acme", device_id, 1, now=NOW)


def test_device_deletion_removes_its_certificates(
    database: Database, device_id: str, certificate: x509.Certificate
) -> None:
    record_issued_certificate(
        database, "acme", device_id, certificate, provider="local", now=NOW
    )
    delete_device(database, "acme", device_id)
    other = create_device(database, "acme", "dev-1", certificate_id="dev-1").id
    assert list_issued_certificates(database, "acme", other) == []
