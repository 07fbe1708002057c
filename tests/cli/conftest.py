"""Run one CLI command group in-process against the test database."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import typer
from typer.testing import CliRunner, Result

Invoke = Callable[..., Result]


@pytest.fixture
def invoke(database_url: str) -> Invoke:
    """Return a function that runs ``app`` with ``args`` on the test database."""
    runner = CliRunner()

    def run(app: typer.Typer, *args: str) -> Result:
        return runner.invoke(
            app, [*args, "--database-url", database_url], catch_exceptions=False
        )

    return run
