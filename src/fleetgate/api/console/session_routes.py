"""Console sign-in, sign-out and the project chooser."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from fleetgate.api.console.pages import ConsoleRoute, redirect, render
from fleetgate.api.console.visitor import (
    COOKIE_PATH,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SIGN_IN_FORM_LIFETIME_SECONDS,
    FormVisitorDep,
    VisitorDep,
    check_sign_in_token,
    new_sign_in_token,
    rejection_log,
)
from fleetgate.api.context import ContextDep
from fleetgate.errors import NotFound, Unauthenticated
from fleetgate.store import console_sessions, projects

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
# Added after every other console route and the static files, so that
# only addresses nothing else serves reach it.
fallback_router = APIRouter(
    prefix="/console", route_class=ConsoleRoute, include_in_schema=False
)


@router.get("")
@router.get("/")
def home(context: ContextDep, visitor: VisitorDep, request: Request) -> Response:
    """Open the key's project, or list every project for an admin key."""
    if visitor.caller.project_id is not None:
        return redirect(f"/console/projects/{visitor.caller.project_id}")
    return render(
        request,
        "projects.html",
        {"title": "Projects", "projects": projects.list_projects(context.db)},
        visitor=visitor,
    )


@router.get("/sign-in")
def sign_in_form(request: Request, next: str = "") -> Response:
    """Show the sign-in form with a fresh one-off CSRF token."""
    return _sign_in_page(request, next_path=next)


@router.post("/sign-in")
def sign_in(
    request: Request,
    context: ContextDep,
    api_key: Annotated[str, Form()] = "",
    sign_in_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Open a session for a valid API key and set its cookie."""
    check_sign_in_token(request, sign_in_token)
    try:
        opened = console_sessions.open_session(context.db, api_key.strip())
    except Unauthenticated as exc:
        peer = request.client.host if request.client is not None else "-"
        rejection_log.warn(exc.reason, peer)
        message = "Enter an API key." if not api_key.strip() else _sign_in_error(exc)
        return _sign_in_page(request, next_path=next, error=message, status_code=401)

    response = redirect(_safe_next(next))
    response.set_cookie(
        SESSION_COOKIE,
        opened.token,
        max_age=int(console_sessions.SESSION_LIFETIME.total_seconds()),
        path=COOKIE_PATH,
        secure=True,
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(
        SIGN_IN_COOKIE, path=COOKIE_PATH, secure=True, httponly=True, samesite="strict"
    )
    return response


@router.post("/sign-out")
def sign_out(context: ContextDep, visitor: FormVisitorDep) -> Response:
    """End the session and forget its cookie."""
    console_sessions.close_session(context.db, visitor.session_token)
    response = redirect("/console/sign-in")
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, secure=True, httponly=True, samesite="strict"
    )
    return response


def _sign_in_page(
    request: Request, *, next_path: str, error: str = "", status_code: int = 200
) -> Response:
    token = new_sign_in_token()
    response = render(
        request,
        "sign_in.html",
        {
            "title": "Sign in",
            "sign_in_token": token,
            "next_path": _safe_next(next_path),
            "error": error,
        },
        status_code=status_code,
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        max_age=SIGN_IN_FORM_LIFETIME_SECONDS,
        path=COOKIE_PATH,
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


def _sign_in_error(exc: Unauthenticated) -> str:
    # The API's messages name headers; a person at the form needs the key.
    if exc.reason == "revoked_api_key":
        return (
            "This API key was revoked. Create a new one with 'fleetgate apikey create'."
        )
    return (
        "This API key is not valid. Paste the whole key, starting with fgk_: "
        "the admin key that 'fleetgate serve' printed at its first start, or "
        "a key that 'fleetgate apikey create' printed."
    )


def _safe_next(path: str) -> str:
    # Only paths inside the console, so the form cannot send people
    # to another site after signing in.
    if path.startswith("/console/") and not path.startswith("/console//"):
        return path
    return "/console/"


@fallback_router.get("/{path:path}")
def page_not_found(path: str, visitor: VisitorDep) -> Response:
    """Show the console's 404 page, with its navigation, for an unknown address."""
    raise NotFound(f"cannot find the console page /console/{path}; check the address")
