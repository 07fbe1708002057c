"""Rendering console pages: templates, security headers and error pages.

Pages are HTML rendered on the server from the Jinja2 templates beside
this module. Every page is sent with a Content-Security-Policy that
allows only this server's own scripts, styles and images, so markup
that slipped through escaping still cannot run a script.

:class:`ConsoleRoute` turns the errors of console routes into pages
rather than the API's JSON bodies: a request without a session is sent
to the sign-in page, and any other Fleetgate error becomes a page with
the error's status and message. A form whose body exceeds the API's
size limit reaches the route without its body (see
:class:`fleetgate.api.errors.GuardMiddleware`), and gets the page that
:func:`shows_oversized_form` registered for the route, or an error page.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from fleetgate.api.console.visitor import (
    CSRF_FIELD,
    SignInRequired,
    Visitor,
    current_visitor,
)
from fleetgate.api.context import get_context
from fleetgate.api.errors import OVERSIZED_BODY_STATE, OversizedBody
from fleetgate.errors import FleetgateError
from fleetgate.store.projects import ProjectRecord

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
SIGN_IN_PATH = "/console/sign-in"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

templates = Jinja2Templates(directory=TEMPLATES_DIR)

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
# Renders a form's page for a body over the size limit, run in a thread.
OversizedFormPage = Callable[[Request, OversizedBody], Response]
_oversized_form_pages: dict[Callable[..., Any], OversizedFormPage] = {}


def _days_until(moment: dt.datetime | None, now: dt.datetime) -> int | None:
    if moment is None:
        return None
    return (moment - now) // dt.timedelta(days=1)


def _timestamp(moment: dt.datetime | None) -> str:
    if moment is None:
        return "never"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _time_tag(moment: dt.datetime) -> Markup:
    """Format a moment to the second, with its ISO 8601 form for machines."""
    utc = moment.astimezone(dt.UTC)
    return Markup('<time datetime="{}">{}</time>').format(
        utc.isoformat(), utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    )


templates.env.filters["timestamp"] = _timestamp
templates.env.filters["time_tag"] = _time_tag
templates.env.globals["days_until"] = _days_until
templates.env.globals["csrf_field"] = CSRF_FIELD


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    visitor: Visitor | None = None,
    status_code: int = 200,
) -> Response:
    """Render a page with the visitor's CSRF token and the security headers."""
    values = {
        "visitor": visitor,
        "csrf_token": visitor.csrf_token if visitor is not None else "",
        "now": dt.datetime.now(dt.UTC),
        **context,
    }
    return templates.TemplateResponse(
        request,
        template,
        values,
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )


def confirm_disable(
    request: Request,
    visitor: Visitor,
    project: ProjectRecord,
    *,
    title: str,
    question: str,
    consequence: str,
    action: str,
    cancel_url: str,
) -> Response:
    """Render a page that asks before a form disables something.

    The page's form posts to ``action`` again with ``confirmed=true``,
    so the step works without JavaScript.
    """
    return render(
        request,
        "confirm.html",
        {
            "title": title,
            "project": project,
            "question": question,
            "consequence": consequence,
            "action": action,
            "cancel_url": cancel_url,
            "confirm_label": title,
        },
        visitor=visitor,
    )


def redirect(url: str) -> RedirectResponse:
    """Send the browser to ``url`` with a GET (303 See Other)."""
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def shows_oversized_form(
    page: OversizedFormPage,
) -> Callable[[Endpoint], Endpoint]:
    """Register ``page`` to render the decorated route's oversized forms.

    ``page`` gets no form fields, so no CSRF token either: it must only
    render, never change anything.
    """

    def register(endpoint: Endpoint) -> Endpoint:
        _oversized_form_pages[endpoint] = page
        return endpoint

    return register


def upload_file_name(oversized: OversizedBody, field: str) -> str:
    """Return the file name sent in a multipart form's ``field``, or "".

    The name is read from the part headers in the body's first bytes.
    """
    pattern = rb'name="' + re.escape(field.encode()) + rb'"; filename="([^"\r\n]*)"'
    found = re.search(pattern, oversized.head)
    return found[1].decode(errors="replace") if found else ""


class ConsoleRoute(APIRoute):
    """A route whose errors render as console pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            oversized = request.scope.get("state", {}).get(OVERSIZED_BODY_STATE)
            try:
                if oversized is not None:
                    return await self._oversized_form(request, oversized)
                return await handler(request)
            except SignInRequired:
                return _to_sign_in(request)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in error.get('loc', ()))}: "
                    f"{error.get('msg', 'invalid value')}"
                    for error in exc.errors()
                )
                visitor = await run_in_threadpool(_signed_in_visitor, request)
                return _error_page(
                    request, 400, f"cannot show this page: {problems}", visitor
                )
            except FleetgateError as exc:
                visitor = await run_in_threadpool(_signed_in_visitor, request)
                return _error_page(request, exc.http_status, exc.message, visitor)

        return guarded

    async def _oversized_form(
        self, request: Request, oversized: OversizedBody
    ) -> Response:
        page = _oversized_form_pages.get(self.endpoint)
        if page is None:
            return _error_page(
                request,
                413,
                f"cannot accept this form: it is larger than {oversized.limit} "
                "bytes; send less data",
            )
        return await run_in_threadpool(page, request, oversized)


def _to_sign_in(request: Request) -> Response:
    if request.method != "GET":
        return _error_page(
            request, 401, "cannot accept this form: your session ended; sign in again"
        )
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return redirect(f"{SIGN_IN_PATH}?next={quote(target, safe='')}")


def _signed_in_visitor(request: Request) -> Visitor | None:
    """Return the visitor of a live session, for an error page's navigation."""
    try:
        return current_visitor(request, get_context(request))
    except (SignInRequired, FleetgateError):
        return None


def _error_page(
    request: Request, status: int, message: str, visitor: Visitor | None = None
) -> Response:
    if status >= 500:
        log.error("console page failed path=%s error=%s", request.url.path, message)
    return render(
        request,
        "error.html",
        {"title": f"Error {status}", "status": status, "message": message},
        visitor=visitor,
        status_code=status,
    )
