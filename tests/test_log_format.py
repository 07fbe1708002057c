"""Log line formats: JSON lines carry the fields, and API keys never appear."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from fleetgate.log_format import JsonFormatter, TextFormatter, split_fields

KEY = "fgk_" + "A1b2_C3d-" * 4 + "xyz1234"


def record(
    message: str, *args: object, level: int = logging.WARNING
) -> logging.LogRecord:
    return logging.LogRecord(
        "fleetgate.gateway.server", level, __file__, 1, message, args, None
    )


def test_split_fields_separates_text_and_fields() -> None:
    text, fields = split_fields(
        "device rejected peer=::ffff:127.0.0.1:40112 project=acme "
        "cert_id=sensor-2 reason=unknown_ca fingerprint=3f9a"
    )

    assert text == "device rejected"
    assert fields == {
        "peer": "::ffff:127.0.0.1:40112",
        "project": "acme",
        "cert_id": "sensor-2",
        "reason": "unknown_ca",
        "fingerprint": "3f9a",
    }


def test_split_fields_keeps_spaces_inside_a_value() -> None:
    _, fields = split_fields("request failed reason=x error=cannot open: no such file")

    assert fields["error"] == "cannot open: no such file"


def test_json_line_carries_the_reason() -> None:
    line = JsonFormatter().format(
        record("device rejected peer=%s:%s %s", "127.0.0.1", 40112, "reason=expired")
    )

    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "fleetgate.gateway.server"
    assert entry["message"] == "device rejected"
    assert entry["reason"] == "expired"
    assert entry["peer"] == "127.0.0.1:40112"
    assert entry["time"].endswith("+00:00")


def test_json_renames_reserved_fields() -> None:
    entry = json.loads(JsonFormatter().format(record("log entry level=debug")))

    assert entry["level"] == "WARNING"
    assert entry["field_level"] == "debug"


def test_json_carries_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("request failed")
        failed.exc_info = sys.exc_info()

    entry = json.loads(JsonFormatter().format(failed))

    assert "ValueError: boom" in entry["exception"]


@pytest.mark.parametrize(
    "formatter",
    [
        pytest.param(JsonFormatter(), id="json"),
        pytest.param(TextFormatter(), id="text"),
    ],
)
def test_api_keys_are_redacted(formatter: logging.Formatter) -> None:
    line = formatter.format(record("api request path=/v1/projects/%s", KEY))

    assert KEY not in line
    assert "fgk_[redacted]" in line
