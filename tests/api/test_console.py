"""The web console's routes in-process: sign-in, CSRF, scoping, forms.

The console's cookies are ``Secure``, so these clients talk to
``https://testserver``; httpx would not send the cookies over http.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator, Sequence

import pytest
from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.conftest import make_leaf
from fleetgate.errors import Reason
from fleetgate.forecast import expiry_forecast
from fleetgate.store import (
    apikeys,
    certificates,
    connections,
    console_sessions,
    devices,
    state,
)
from fleetgate.store.connections import ConnectionResult, NewConnectionEvent
from fleetgate.store.database import Database
from fleetgate.store.models import ConsoleSession, Device
from store.certs import make_root

BASE_URL = "https://testserver"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SIGN_IN_TOKEN = re.compile(r'name="sign_in_token" value="([^"]+)"')


def post_sign_in(client: TestClient, key: str, *, next_path: str = "") -> Response:
    """Fetch the sign-in form and post ``key`` with its one-off token."""
    form = client.get("/console/sign-in")
    token = SIGN_IN_TOKEN.search(form.text)
    assert token is not None, form.text
    return client.post(
        "/console/sign-in",
        data={"api_key": key, "sign_in_token": token[1], "next": next_path},
    )


def sign_in(client: TestClient, key: str) -> TestClient:
    """Sign ``client`` in through the form, as a browser does."""
    response = post_sign_in(client, key)
    assert response.status_code == 303, response.text
    return client


def csrf_token(client: TestClient, path: str) -> str:
    """Read the CSRF token from the forms of a console page."""
    page = client.get(path)
    match = CSRF.search(page.text)
    assert match is not None, page.text
    return match[1]


def upload_error(response: Response) -> str:
    """Return the error shown next to the upload form's file field."""
    error = re.search(
        r'<p id="cert_file-error" class="field-error">([^<]*)', response.text
    )
    assert error is not None, response.text
    return error[1]


def upload(client: TestClient, filename: str, content: bytes) -> Response:
    """Post ``content`` as a CA certificate file through the upload form."""
    csrf = csrf_token(client, "/console/projects/acme/certificates")
    return client.post(
        "/console/projects/acme/certificates",
        data={"csrf_token": csrf, "cert_type": "auto"},
        files={"cert_file": (filename, content, "text/plain")},
    )


@pytest.fixture
def browser(app: FastAPI) -> Iterator[TestClient]:
    """A client with no session, which does not follow redirects."""
    with TestClient(
        app, base_url=BASE_URL, follow_redirects=False, raise_server_exceptions=False
    ) as client:
        yield client


@pytest.fixture
def acme_browser(browser: TestClient, acme_key: apikeys.IssuedApiKey) -> TestClient:
    return sign_in(browser, acme_key.secret)


@pytest.fixture
def device(database: Database) -> devices.DeviceRecord:
    return devices.create_device(
        database, "acme", "sensor-1", certificate_id="sensor-1"
    )


# Sign-in and sessions.


def test_page_without_session_redirects_to_sign_in(browser: TestClient) -> None:
    response = browser.get("/console/projects/acme/devices?q=x")
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/console/sign-in?next=%2Fconsole%2Fprojects%2Facme%2Fdevices%3Fq%3Dx"
    )


def test_sign_in_sets_strict_secure_cookie(
    browser: TestClient, acme_key: apikeys.IssuedApiKey
) -> None:
    response = post_sign_in(browser, acme_key.secret)
    cookie = next(
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith("fleetgate_session=")
    )
    assert response.headers["location"] == "/console/"
    assert "; Secure" in cookie
    assert "; HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie


def test_session_row_stores_hash_not_token(
    acme_browser: TestClient, database: Database, acme_key: apikeys.IssuedApiKey
) -> None:
    token = acme_browser.cookies["fleetgate_session"]
    with database.session(read_only=True) as session:
        rows = session.scalars(select(ConsoleSession)).all()
    assert [row.token_hash for row in rows] == [console_sessions.hash_token(token)]
    assert rows[0].api_key_id == acme_key.record.id
    assert rows[0].expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(hours=11)


def test_project_key_opens_its_project(acme_browser: TestClient) -> None:
    response = acme_browser.get("/console/")
    assert response.headers["location"] == "/console/projects/acme"


def test_admin_key_lists_every_project(
    browser: TestClient, admin_key: apikeys.IssuedApiKey
) -> None:
    page = sign_in(browser, admin_key.secret).get("/console/")
    assert 'href="/console/projects/acme"' in page.text
    assert 'href="/console/projects/other"' in page.text


def test_sign_in_returns_to_requested_page(
    browser: TestClient, acme_key: apikeys.IssuedApiKey
) -> None:
    response = post_sign_in(
        browser, acme_key.secret, next_path="/console/projects/acme/devices"
    )
    assert response.headers["location"] == "/console/projects/acme/devices"


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("https://evil.example/", id="fail/other-site"),
        pytest.param("//evil.example/console/", id="fail/scheme-relative"),
        pytest.param("/console//evil.example", id="fail/double-slash"),
    ],
)
def test_sign_in_never_redirects_off_console(
    browser: TestClient, acme_key: apikeys.IssuedApiKey, target: str
) -> None:
    response = post_sign_in(browser, acme_key.secret, next_path=target)
    assert response.headers["location"] == "/console/"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        pytest.param("fgk_" + "x" * 43, "This API key is not valid", id="fail/unknown"),
        pytest.param("nonsense", "This API key is not valid", id="fail/shape"),
        pytest.param("", "Enter an API key", id="fail/empty"),
    ],
)
def test_bad_key_shows_error_at_field(
    browser: TestClient, key: str, message: str
) -> None:
    response = post_sign_in(browser, key)
    assert response.status_code == 401
    assert f'<p id="api_key-error" class="field-error">{message}' in response.text
    assert "fleetgate_session" not in browser.cookies


def test_bad_key_error_names_admin_key(browser: TestClient) -> None:
    response = post_sign_in(browser, "fgk_" + "x" * 43)
    assert "the admin key" in response.text
    assert "fleetgate serve" in response.text


def test_revoked_key_cannot_sign_in(
    browser: TestClient, database: Database, acme_key: apikeys.IssuedApiKey
) -> None:
    apikeys.revoke_api_key(database, "acme", acme_key.record.id, actor="test")
    response = post_sign_in(browser, acme_key.secret)
    assert response.status_code == 401
    assert "This API key was revoked" in response.text


def test_sign_in_without_form_token_is_forbidden(
    browser: TestClient, acme_key: apikeys.IssuedApiKey
) -> None:
    browser.get("/console/sign-in")
    response = browser.post(
        "/console/sign-in", data={"api_key": acme_key.secret, "sign_in_token": "x"}
    )
    assert response.status_code == 403
    assert "fleetgate_session" not in browser.cookies


def test_sign_in_without_cookie_explains_secure_cookies(
    app: FastAPI, acme_key: apikeys.IssuedApiKey
) -> None:
    # Over plain http the client keeps no Secure cookie, as browsers do
    # on addresses other than localhost.
    with TestClient(app, base_url="http://console.example") as plain:
        response = post_sign_in(plain, acme_key.secret)
    assert response.status_code == 403
    assert "only over HTTPS or on localhost" in response.text


def test_revoking_key_ends_its_sessions(
    acme_browser: TestClient, database: Database, acme_key: apikeys.IssuedApiKey
) -> None:
    apikeys.revoke_api_key(database, "acme", acme_key.record.id, actor="test")
    response = acme_browser.get("/console/projects/acme")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/sign-in")


def test_expired_session_is_not_found(
    app: FastAPI, database: Database, acme_key: apikeys.IssuedApiKey
) -> None:
    opened_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=13)
    opened = console_sessions.open_session(database, acme_key.secret, now=opened_at)
    assert console_sessions.find_session(database, opened.token) is None


def test_sign_out_ends_session(acme_browser: TestClient, database: Database) -> None:
    token = acme_browser.cookies["fleetgate_session"]
    csrf = csrf_token(acme_browser, "/console/projects/acme")

    response = acme_browser.post("/console/sign-out", data={"csrf_token": csrf})

    assert response.headers["location"] == "/console/sign-in"
    assert console_sessions.find_session(database, token) is None
    acme_browser.cookies.set("fleetgate_session", token, path="/console")
    assert acme_browser.get("/console/projects/acme").status_code == 303


# CSRF.


def test_every_form_carries_session_token(
    acme_browser: TestClient, database: Database, device: devices.DeviceRecord
) -> None:
    certificates.add_ca_certificate(database, "acme", make_root().pem)
    token = csrf_token(acme_browser, "/console/projects/acme")
    for path in (
        "/console/projects/acme/certificates",
        f"/console/projects/acme/devices/{device.id}",
    ):
        page = acme_browser.get(path).text
        forms = page.count('method="post"')
        assert forms >= 2, path
        assert page.count(f'name="csrf_token" value="{token}"') == forms, path


def test_post_without_csrf_token_is_forbidden(
    acme_browser: TestClient, database: Database, device: devices.DeviceRecord
) -> None:
    response = acme_browser.post(
        f"/console/projects/acme/devices/{device.id}/enabled",
        data={"enabled": "false"},
    )
    assert response.status_code == 403
    assert "CSRF token does not match" in response.text
    assert devices.get_device(database, "acme", device.id).enabled


def test_post_with_other_sessions_token_is_forbidden(
    app: FastAPI,
    acme_browser: TestClient,
    acme_key: apikeys.IssuedApiKey,
    database: Database,
    device: devices.DeviceRecord,
) -> None:
    with TestClient(app, base_url=BASE_URL, follow_redirects=False) as second:
        foreign = csrf_token(sign_in(second, acme_key.secret), "/console/projects/acme")
    response = acme_browser.post(
        f"/console/projects/acme/devices/{device.id}/enabled",
        data={"enabled": "false", "csrf_token": foreign},
    )
    assert response.status_code == 403
    assert devices.get_device(database, "acme", device.id).enabled


def test_post_from_other_origin_is_forbidden(
    acme_browser: TestClient, database: Database, device: devices.DeviceRecord
) -> None:
    csrf = csrf_token(acme_browser, "/console/projects/acme")
    response = acme_browser.post(
        f"/console/projects/acme/devices/{device.id}/enabled",
        data={"enabled": "false", "csrf_token": csrf},
        headers={"origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert devices.get_device(database, "acme", device.id).enabled


def test_csrf_header_is_accepted(
    acme_browser: TestClient, database: Database, device: devices.DeviceRecord
) -> None:
    csrf = csrf_token(acme_browser, "/console/projects/acme")
    response = acme_browser.post(
        f"/console/projects/acme/devices/{device.id}/enabled",
        data={"enabled": "false", "confirmed": "true"},
        headers={"x-csrf-token": csrf, "origin": BASE_URL},
    )
    assert response.status_code == 303
    assert not devices.get_device(database, "acme", device.id).enabled


def test_post_without_session_is_401(
    browser: TestClient, device: devices.DeviceRecord
) -> None:
    response = browser.post(
        f"/console/projects/acme/devices/{device.id}/enabled",
        data={"enabled": "false"},
    )
    assert response.status_code == 401


# Projects are kept apart.


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/console/projects/other", id="overview"),
        pytest.param("/console/projects/other/certificates", id="certificates"),
        pytest.param("/console/projects/other/devices", id="devices"),
        pytest.param("/console/projects/other/connections", id="connections"),
        pytest.param("/console/projects/other/expiries", id="expiries"),
        pytest.param("/console/projects/nowhere", id="missing-project"),
    ],
)
def test_other_project_is_404(acme_browser: TestClient, path: str) -> None:
    response = acme_browser.get(path)
    assert response.status_code == 404
    assert "cannot find project" in response.text


def test_other_projects_device_is_404(
    acme_browser: TestClient, database: Database
) -> None:
    theirs = devices.create_device(database, "other", "their-device")
    assert (
        acme_browser.get(f"/console/projects/other/devices/{theirs.id}").status_code
        == 404
    )
    assert (
        acme_browser.get(f"/console/projects/acme/devices/{theirs.id}").status_code
        == 404
    )


def test_other_projects_device_cannot_be_disabled(
    acme_browser: TestClient, database: Database
) -> None:
    theirs = devices.create_device(database, "other", "their-device")
    csrf = csrf_token(acme_browser, "/console/projects/acme")
    for project in ("acme", "other"):
        response = acme_browser.post(
            f"/console/projects/{project}/devices/{theirs.id}/enabled",
            data={"enabled": "false", "csrf_token": csrf},
        )
        assert response.status_code == 404
    assert devices.get_device(database, "other", theirs.id).enabled


# Pages and forms.


def test_pages_send_content_security_policy(acme_browser: TestClient) -> None:
    response = acme_browser.get("/console/projects/acme")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


def test_upload_registers_ca_and_tells_gateway(
    acme_browser: TestClient, database: Database, trust_changes: list[str]
) -> None:
    root = make_root("Console Root")
    csrf = csrf_token(acme_browser, "/console/projects/acme/certificates")

    response = acme_browser.post(
        "/console/projects/acme/certificates",
        data={"csrf_token": csrf, "cert_type": "auto"},
        files={"cert_file": ("root.der", root.der, "application/octet-stream")},
    )

    assert response.status_code == 303
    listed = certificates.list_ca_certificates(database, "acme")
    assert [ca.subject for ca in listed] == ["CN=Console Root"]
    assert listed[0].cert_type == "root"
    assert trust_changes == ["acme"]


def test_upload_of_leaf_shows_error_at_file_field(
    acme_browser: TestClient, database: Database
) -> None:
    leaf = make_leaf(make_root())
    csrf = csrf_token(acme_browser, "/console/projects/acme/certificates")

    from cryptography.hazmat.primitives.serialization import Encoding

    response = acme_browser.post(
        "/console/projects/acme/certificates",
        data={"csrf_token": csrf, "cert_type": "auto"},
        files={
            "cert_file": ("leaf.pem", leaf.public_bytes(Encoding.PEM), "text/plain")
        },
    )

    assert response.status_code == 400
    assert "(not_a_ca)" in upload_error(response)
    assert "The file &#39;leaf.pem&#39; was rejected" in upload_error(response)
    assert certificates.list_ca_certificates(database, "acme") == []


def test_upload_without_file_shows_error(acme_browser: TestClient) -> None:
    csrf = csrf_token(acme_browser, "/console/projects/acme/certificates")
    response = acme_browser.post(
        "/console/projects/acme/certificates",
        data={"csrf_token": csrf, "cert_type": "auto"},
        files={"cert_file": ("", b"", "application/octet-stream")},
    )
    assert response.status_code == 400
    assert "Choose a PEM or DER certificate file." in response.text


def test_upload_over_body_limit_shows_error_at_field(
    acme_browser: TestClient, database: Database
) -> None:
    response = upload(acme_browser, "huge.pem", b"A" * 5_000_000)

    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "&#39;huge.pem&#39; is larger than 1024 KiB" in upload_error(response)
    assert "at most 64 KiB (65536 bytes)" in upload_error(response)
    assert certificates.list_ca_certificates(database, "acme") == []


def test_upload_over_file_limit_shows_error_at_field(
    acme_browser: TestClient, database: Database
) -> None:
    response = upload(acme_browser, "big.pem", b"A" * 100_000)

    assert response.status_code == 413
    assert "&#39;big.pem&#39; is 97 KiB (100000 bytes)" in upload_error(response)
    assert "at most 64 KiB" in upload_error(response)
    assert certificates.list_ca_certificates(database, "acme") == []


def test_oversized_upload_without_session_changes_nothing(
    browser: TestClient, database: Database
) -> None:
    response = browser.post(
        "/console/projects/acme/certificates",
        files={"cert_file": ("huge.pem", b"A" * 2_000_000, "text/plain")},
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert certificates.list_ca_certificates(database, "acme") == []


def test_oversized_form_renders_error_page(
    acme_browser: TestClient, database: Database, device: devices.DeviceRecord
) -> None:
    path = f"/console/projects/acme/devices/{device.id}"
    csrf = csrf_token(acme_browser, path)
    response = acme_browser.post(
        f"{path}/state",
        data={"csrf_token": csrf, "document": '{"x": "' + "y" * 2_000_000 + '"}'},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "larger than 1048576 bytes" in response.text
    assert state.get_state(database, device.id, (), project_id="acme") == {}


def test_oversized_api_body_is_still_json(acme_browser: TestClient) -> None:
    response = acme_browser.post(
        "/v1/projects/acme/devices",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_duplicate_upload_shows_conflict(
    acme_browser: TestClient, database: Database
) -> None:
    root = make_root()
    certificates.add_ca_certificate(database, "acme", root.pem)
    csrf = csrf_token(acme_browser, "/console/projects/acme/certificates")
    response = acme_browser.post(
        "/console/projects/acme/certificates",
        data={"csrf_token": csrf, "cert_type": "root"},
        files={"cert_file": ("root.pem", root.pem, "text/plain")},
    )
    assert response.status_code == 400
    assert "(ca_already_registered)" in upload_error(response)
    assert "The file &#39;root.pem&#39; was rejected" in upload_error(response)


def test_ca_toggle_disables_trust(
    acme_browser: TestClient, database: Database, trust_changes: list[str]
) -> None:
    ca = certificates.add_ca_certificate(database, "acme", make_root().pem)
    csrf = csrf_token(acme_browser, "/console/projects/acme/certificates")
    response = acme_browser.post(
        f"/console/projects/acme/certificates/{ca.id}/enabled",
        data={"csrf_token": csrf, "enabled": "false", "confirmed": "true"},
    )
    assert response.status_code == 303
    assert not certificates.get_ca_certificate(database, "acme", ca.id).enabled
    assert trust_changes == ["acme"]


def test_ca_disable_asks_first(
    acme_browser: TestClient, database: Database, trust_changes: list[str]
) -> None:
    ca = certificates.add_ca_certificate(database, "acme", make_root("Asked").pem)
    csrf = csrf_token(acme_browser, "/console/projects/acme/certificates")
    action = f"/console/projects/acme/certificates/{ca.id}/enabled"

    response = acme_browser.post(action, data={"csrf_token": csrf, "enabled": "false"})

    assert response.status_code == 200
    assert "Stop trusting the CA certificate CN=Asked?" in response.text
    assert f'action="{action}"' in response.text
    assert 'name="confirmed" value="true"' in response.text
    assert certificates.get_ca_certificate(database, "acme", ca.id).enabled
    assert trust_changes == []


def test_device_disable_asks_first(
    acme_browser: TestClient, database: Database, device: devices.DeviceRecord
) -> None:
    path = f"/console/projects/acme/devices/{device.id}"
    csrf = csrf_token(acme_browser, path)

    asked = acme_browser.post(
        f"{path}/enabled", data={"csrf_token": csrf, "enabled": "false"}
    )
    still_enabled = devices.get_device(database, "acme", device.id).enabled
    confirmed = acme_browser.post(
        f"{path}/enabled",
        data={"csrf_token": csrf, "enabled": "false", "confirmed": "true"},
    )

    assert asked.status_code == 200
    assert "Disable device sensor-1?" in asked.text
    assert still_enabled
    assert confirmed.status_code == 303
    assert not devices.get_device(database, "acme", device.id).enabled


def test_device_disable_closes_sessions(
    app: FastAPI,
    acme_browser: TestClient,
    device: devices.DeviceRecord,
) -> None:
    closed: list[tuple[str, list[str], Reason]] = []

    async def close_sessions(
        project_id: str, device_ids: Sequence[str], reason: Reason
    ) -> int:
        closed.append((project_id, list(device_ids), reason))
        return len(device_ids)

    app.state.fleetgate = dataclasses.replace(
        app.state.fleetgate, close_sessions=close_sessions
    )
    path = f"/console/projects/acme/devices/{device.id}"
    csrf = csrf_token(acme_browser, path)
    response = acme_browser.post(
        f"{path}/enabled",
        data={"csrf_token": csrf, "enabled": "false", "confirmed": "true"},
    )

    assert response.status_code == 303
    assert closed == [("acme", [device.id], Reason.DEVICE_DISABLED)]


def test_enabling_needs_no_confirmation(
    acme_browser: TestClient, database: Database, device: devices.DeviceRecord
) -> None:
    devices.set_device_enabled(database, "acme", device.id, False)
    path = f"/console/projects/acme/devices/{device.id}"
    csrf = csrf_token(acme_browser, path)
    response = acme_browser.post(
        f"{path}/enabled", data={"csrf_token": csrf, "enabled": "true"}
    )
    assert response.status_code == 303
    assert devices.get_device(database, "acme", device.id).enabled


def test_device_search_pages_results(
    acme_browser: TestClient, database: Database
) -> None:
    for index in range(30):
        devices.create_device(database, "acme", f"pump-{index:02d}")
    devices.create_device(database, "acme", "valve-1")

    first = acme_browser.get("/console/projects/acme/devices?q=PUMP")
    second = acme_browser.get("/console/projects/acme/devices?q=pump&page=1")

    assert "30 devices matching" in first.text
    assert "pump-00" in first.text
    assert "pump-25" not in first.text
    assert "pump-25" in second.text
    assert "valve-1" not in first.text + second.text


def test_invalid_state_shows_error_and_keeps_state(
    acme_browser: TestClient, database: Database, device: devices.DeviceRecord
) -> None:
    state.set_state(database, device.id, ("mode",), "eco", project_id="acme")
    path = f"/console/projects/acme/devices/{device.id}"
    csrf = csrf_token(acme_browser, path)

    response = acme_browser.post(
        f"{path}/state", data={"csrf_token": csrf, "document": '{"mode": '}
    )

    assert response.status_code == 400
    assert "invalid JSON body" in response.text
    assert "{&#34;mode&#34;: </textarea>" in response.text
    assert state.get_state(database, device.id, (), project_id="acme") == {
        "mode": "eco"
    }


def test_state_that_is_not_object_is_rejected(
    acme_browser: TestClient, device: devices.DeviceRecord
) -> None:
    path = f"/console/projects/acme/devices/{device.id}"
    csrf = csrf_token(acme_browser, path)
    response = acme_browser.post(
        f"{path}/state", data={"csrf_token": csrf, "document": "[1]"}
    )
    assert response.status_code == 400
    assert "must be a JSON object" in response.text


def test_valid_state_replaces_document(
    acme_browser: TestClient, database: Database, device: devices.DeviceRecord
) -> None:
    path = f"/console/projects/acme/devices/{device.id}"
    csrf = csrf_token(acme_browser, path)
    response = acme_browser.post(
        f"{path}/state",
        data={"csrf_token": csrf, "document": '{"interval": 30, "leds": [1, 0]}'},
    )
    assert response.status_code == 303
    assert state.get_state(database, device.id, (), project_id="acme") == {
        "interval": 30,
        "leds": [1, 0],
    }


def test_connection_log_filters_by_reason(
    acme_browser: TestClient, database: Database
) -> None:
    now = dt.datetime.now(dt.UTC)
    connections.write_events(
        database,
        [
            NewConnectionEvent(
                project_id="acme",
                peer="127.0.0.1:5000",
                result=ConnectionResult.REJECTED,
                created_at=now,
                reason="device_disabled",
                certificate_id="sensor-7",
            ),
            NewConnectionEvent(
                project_id="acme",
                peer="127.0.0.1:5001",
                result=ConnectionResult.REJECTED,
                created_at=now,
                reason="expired",
                certificate_id="sensor-8",
            ),
        ],
    )

    page = acme_browser.get("/console/projects/acme/connections?reason=expired")

    assert "sensor-8" in page.text
    assert "sensor-7" not in page.text


def test_connection_log_unknown_reason_shows_error(acme_browser: TestClient) -> None:
    page = acme_browser.get("/console/projects/acme/connections?reason=bogus")
    assert page.status_code == 400
    assert 'id="reason-error"' in page.text


def test_expiry_chart_matches_forecast(
    acme_browser: TestClient, database: Database
) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=10)
    for name in ("a", "b", "off"):
        record = devices.create_device(database, "acme", name)
        with database.session() as session:
            row = session.get(Device, record.id)
            assert row is not None
            row.last_certificate_not_after = soon
            row.enabled = name != "off"
    forecast = expiry_forecast(database, "acme", now=dt.datetime.now(dt.UTC))

    page = acme_browser.get("/console/projects/acme/expiries")

    assert sum(week.devices for week in forecast.weeks) == 2
    assert "2 devices counted:\n2 lose service in this period" in page.text
    assert "the busiest week has 2 devices" in page.text
    assert "One bar per week" in page.text
    assert "Disabled devices, and devices that have never connected" in page.text
    assert '<title id="chart-title">' in page.text


def test_bad_query_renders_error_page(acme_browser: TestClient) -> None:
    response = acme_browser.get("/console/projects/acme/devices?page=-1")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "query.page" in response.text


def test_state_markup_is_escaped(
    acme_browser: TestClient, database: Database, device: devices.DeviceRecord
) -> None:
    markup = "<script>alert(1)</script>"
    state.set_state(database, device.id, (markup,), markup, project_id="acme")
    page = acme_browser.get(f"/console/projects/acme/devices/{device.id}").text
    assert markup not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# Layout and wording.


def test_connection_log_times_have_seconds(
    acme_browser: TestClient, database: Database
) -> None:
    moment = dt.datetime(2026, 11, 30, 8, 15, 42, tzinfo=dt.UTC)
    connections.write_events(
        database,
        [
            NewConnectionEvent(
                project_id="acme",
                peer="127.0.0.1:5000",
                result=ConnectionResult.REJECTED,
                created_at=moment,
                reason="expired",
                certificate_id="sensor-9",
                fingerprint="ab" * 32,
            )
        ],
    )

    page = acme_browser.get("/console/projects/acme/connections").text

    assert (
        '<time datetime="2026-11-30T08:15:42+00:00">2026-11-30 08:15:42 UTC</time>'
        in page
    )


def test_fingerprint_opens_to_whole_value(
    acme_browser: TestClient, database: Database
) -> None:
    ca = certificates.add_ca_certificate(database, "acme", make_root().pem)
    page = acme_browser.get("/console/projects/acme/certificates").text
    assert f"<summary><code>{ca.fingerprint[:16]}…</code>" in page
    assert f'<code class="fingerprint">{ca.fingerprint}</code></details>' in page
    assert f'title="{ca.fingerprint}"' not in page


def test_fresh_ca_validity_bar_is_labelled(
    acme_browser: TestClient, database: Database
) -> None:
    root = make_root()
    ca = certificates.add_ca_certificate(database, "acme", root.pem)
    total_days = round((ca.not_after - ca.not_before).total_seconds() / 86400)
    page = acme_browser.get("/console/projects/acme/certificates").text
    assert f"0 of {total_days} days used" in page
    assert re.search(r'class="validity-used[^"]*"[^>]* width="2.0"', page), page


def test_empty_chart_says_it_has_no_bars(acme_browser: TestClient) -> None:
    page = acme_browser.get("/console/projects/acme/expiries").text
    assert "so the chart has no bars" in page
    assert "Hover" not in page


def test_not_found_page_keeps_navigation(acme_browser: TestClient) -> None:
    for path in ("/console/projects/acme/devices/nothing", "/console/nowhere"):
        response = acme_browser.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html"), path
        assert "Sign out" in response.text, path
        assert 'href="/console/projects/acme"' in response.text, path


def test_unknown_address_without_session_goes_to_sign_in(
    browser: TestClient,
) -> None:
    response = browser.get("/console/nowhere")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/sign-in?next=")
