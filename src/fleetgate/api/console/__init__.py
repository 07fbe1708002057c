"""The web console: HTML pages served by the management API's app.

The console lives under ``/console`` in the same process and origin as
the API, and acts with the scope of the API key someone signs in with.
Its pages are rendered on the server, its few scripts and styles are
files in this package, and nothing is loaded from another site.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from fleetgate.api.console import (
    certificate_routes,
    connection_routes,
    device_routes,
    project_routes,
    session_routes,
)
from fleetgate.api.console.pages import STATIC_DIR

__all__ = ["PATHS", "install_console"]

# Every console path, for the API's middleware, which hands a console
# form over its size limit to the console instead of responding with JSON.
PATHS = re.compile(r"/console(/.*)?")


def install_console(app: FastAPI) -> None:
    """Add the console's pages and static files to the API's app."""
    for module in (
        session_routes,
        project_routes,
        certificate_routes,
        device_routes,
        connection_routes,
    ):
        app.include_router(module.router)
    app.mount(
        "/console/static", StaticFiles(directory=STATIC_DIR), name="console_static"
    )
    app.include_router(session_routes.fallback_router)
