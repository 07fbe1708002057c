"""Who is using the web console: the session cookie, CSRF checks, redirects.

Signing in opens a session with an API key (see
:mod:`fleetgate.store.console_sessions`). The browser gets the session
token in a cookie marked ``Secure``, ``HttpOnly`` and
``SameSite=Strict``, scoped to ``/console``. Chromium keeps ``Secure``
cookies from ``http://localhost`` and ``http://127.0.0.1``, which it
treats as secure contexts (the browser tests check this with Debian's
Chromium 156), so the console works without TLS on loopback. Reached
over plain HTTP on any other address, the browser drops the cookie, and
the sign-in page explains that the console needs HTTPS there, such as
a reverse proxy that terminates TLS in front of Fleetgate.

Every POST must carry the session's CSRF token, in the form field
``csrf_token`` or the ``X-CSRF-Token`` header, and a POST whose
``Origin`` header names another host is rejected too. The sign-in form
has no session yet, so it carries a one-off token that must match a
short-lived cookie set with the form.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from fleetgate.api.auth import Caller, _RejectionLog
from fleetgate.api.context import ContextDep
from fleetgate.errors import Forbidden, Reason
from fleetgate.store import console_sessions

log = logging.getLogger(__name__)

SESSION_COOKIE = "fleetgate_session"
SIGN_IN_COOKIE = "fleetgate_sign_in"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SIGN_IN_FORM_LIFETIME_SECONDS = 30 * 60

rejection_log = _RejectionLog(10.0)


class SignInRequired(Exception):
    """The request has no live console session."""


@dataclasses.dataclass(frozen=True)
class Visitor:
    """A signed-in console user: the API key they signed in with."""

    caller: Caller
    csrf_token: str = dataclasses.field(repr=False)
    session_token: str = dataclasses.field(repr=False)

    @property
    def actor(self) -> str:
        """The actor recorded in the audit log, the API key's ID."""
        return self.caller.actor

    def require_project(self, project_id: str) -> None:
        """Raise NotFound, as for a missing project, unless the key reaches it."""
        self.caller.require_project(project_id)


def current_visitor(request: Request, context: ContextDep) -> Visitor:
    """Return the signed-in visitor, or raise SignInRequired."""
    token = request.cookies.get(SESSION_COOKIE, "")
    found = console_sessions.find_session(context.db, token)
    if found is None:
        raise SignInRequired()
    return Visitor(
        caller=Caller(key_id=found.api_key_id, project_id=found.project_id),
        csrf_token=found.csrf_token,
        session_token=token,
    )


VisitorDep = Annotated[Visitor, Depends(current_visitor)]


async def checked_visitor(request: Request, visitor: VisitorDep) -> Visitor:
    """Return the visitor of a POST whose origin and CSRF token are right."""
    check_same_origin(request)
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        presented = field if isinstance(field, str) else ""
    if not hmac.compare_digest(presented.encode(), visitor.csrf_token.encode()):
        reject_forgery(request, "the form's CSRF token does not match the session")
    return visitor


FormVisitorDep = Annotated[Visitor, Depends(checked_visitor)]


def project_visitor(project_id: str, visitor: VisitorDep) -> Visitor:
    """Check that the visitor's key reaches the project in the path."""
    visitor.require_project(project_id)
    return visitor


def project_form_visitor(project_id: str, visitor: FormVisitorDep) -> Visitor:
    """Check a POST's CSRF token, then that its key reaches the project."""
    visitor.require_project(project_id)
    return visitor


ProjectVisitorDep = Annotated[Visitor, Depends(project_visitor)]
ProjectFormVisitorDep = Annotated[Visitor, Depends(project_form_visitor)]


def check_same_origin(request: Request) -> None:
    """Reject a request whose Origin header names another host."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin == "null" or urlsplit(origin).netloc != host:
        reject_forgery(request, f"the request comes from origin {origin!r}")


def reject_forgery(request: Request, detail: str) -> None:
    """Log a rejected POST and raise Forbidden."""
    peer = request.client.host if request.client is not None else "-"
    rejection_log.warn(Reason.INVALID_CSRF_TOKEN, peer)
    raise Forbidden(
        f"cannot accept this form: {detail}; reload the page and submit it again",
        reason=Reason.INVALID_CSRF_TOKEN,
    )


def new_sign_in_token() -> str:
    """Return a random token for one sign-in form and its cookie."""
    return secrets.token_urlsafe(32)


def check_sign_in_token(request: Request, presented: str) -> None:
    """Raise Forbidden unless a sign-in form's token matches its cookie."""
    check_same_origin(request)
    expected = request.cookies.get(SIGN_IN_COOKIE)
    if expected is None:
        reject_forgery(
            request,
            "the browser sent no sign-in cookie; it keeps Secure cookies "
            "only over HTTPS or on localhost",
        )
        return
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        reject_forgery(request, "the sign-in form's token does not match its cookie")
