"""The ``fleetgate`` entry point: help text shared by every command."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fleetgate.cli.main import app


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        pytest.param(["project", "create"], "--require-v3", id="ok/require-v3"),
        pytest.param(["pki", "device"], "--v3", id="ok/v3"),
        pytest.param(["serve"], "--no-api", id="ok/no-api"),
        pytest.param(["apikey", "create"], "--admin", id="ok/admin"),
    ],
)
def test_help_shows_flags_without_value(command: list[str], flag: str) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})

    assert result.exit_code == 0, result.output
    [line] = [row for row in result.output.splitlines() if f"  {flag} " in row]
    assert "<bool>" not in line
    assert "<bool>" not in result.output
