"""The log line formats of ``fleetgate serve``: text (default) or JSON lines.

Fleetgate's log lines are a short message followed by ``key=value``
fields, such as ``device rejected peer=192.0.2.7:40112 project=acme
cert_id=sensor-2 reason=unknown_ca fingerprint=3f9a…``. In JSON each
line becomes one object with ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``message`` (the text before the first field) and each field
as a string member. A field whose key is one of those four names is
renamed with a ``field_`` prefix. A traceback goes in ``exception``.

A value runs to the next `` key=`` token, so a value that itself
contains `` word=`` (only free-text ``error=`` details could) is split
there.

Both formats replace anything shaped like a Fleetgate API key with
``fgk_[redacted]``. Fleetgate never logs keys on purpose; this catches a
key that a client sent where a name or path was expected.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import re

# "fgk_" and 43 URL-safe base64 characters (see fleetgate.store.apikeys).
_API_KEY = re.compile(r"fgk_[A-Za-z0-9_-]{20,}")
_FIELD = re.compile(r"(?:^|\s)([a-z][a-z0-9_]*)=")
RESERVED = frozenset({"time", "level", "logger", "message"})
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class LogFormat(enum.StrEnum):
    """Values of ``--log-format``."""

    TEXT = "text"
    JSON = "json"


def redact(text: str) -> str:
    """Replace API keys in ``text``."""
    return _API_KEY.sub("fgk_[redacted]", text)


def split_fields(message: str) -> tuple[str, dict[str, str]]:
    """Split a log message into its leading text and its ``key=value`` fields."""
    matches = list(_FIELD.finditer(message))
    if not matches:
        return message, {}
    text = message[: matches[0].start()].strip()
    fields: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else None
        fields[match.group(1)] = message[match.end() : end].strip()
    return text, fields


class TextFormatter(logging.Formatter):
    """The plain text format, with API keys redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as one text line."""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the message's fields as members."""

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as one JSON line."""
        text, fields = split_fields(record.getMessage())
        created = dt.datetime.fromtimestamp(record.created, dt.UTC)
        entry: dict[str, str] = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": text,
        }
        for key, value in fields.items():
            entry[f"field_{key}" if key in RESERVED else key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False))


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Send every log line at ``level`` or above to standard error.

    As ``logging.basicConfig`` does, this leaves logging alone when the
    root logger has handlers already, such as those of a program that
    runs ``fleetgate serve`` in-process or of pytest.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    formatter: logging.Formatter = (
        JsonFormatter() if log_format is LogFormat.JSON else TextFormatter()
    )
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)
