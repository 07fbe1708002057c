"""The ``/docs`` page: Swagger UI served from this process, not a CDN.

FastAPI's own docs page loads Swagger UI's script and stylesheet from
cdn.jsdelivr.net and its favicon from fastapi.tiangolo.com, so it stays
blank on a network without internet access. This page uses the same
HTML from :func:`fastapi.openapi.docs.get_swagger_ui_html` with the
files that the ``swagger-ui-bundle-v2`` package ships, mounted under
:data:`ASSETS_PATH`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` with its files from this server.

    Build ``app`` with ``docs_url=None`` so that FastAPI's own page,
    which loads the files from a CDN, is not registered first.
    """
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} - Swagger UI"

    @app.get(DOCS_PATH, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        )

    app.mount(
        ASSETS_PATH, StaticFiles(directory=swagger_ui_path), name="swagger_ui_assets"
    )
