"""Console pages for a project's CA certificates: list, upload, enable.

An upload runs :func:`fleetgate.store.certificates.add_ca_certificate`,
the same checks as the API's upload, and shows each rejection next to
the form field it concerns.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from fleetgate.api.console.pages import ConsoleRoute, redirect, render
from fleetgate.api.console.visitor import ProjectFormVisitorDep, ProjectVisitorDep
from fleetgate.api.context import ContextDep
from fleetgate.errors import Conflict, InvalidInput, Reason
from fleetgate.store import certificates, projects

router = APIRouter(
    prefix="/console/projects/{project_id}/certificates",
    route_class=ConsoleRoute,
    include_in_schema=False,
)

CERT_TYPE_CHOICES = ("auto", *certificates.CERT_TYPES)


@router.get("")
def certificate_list(
    project_id: str, request: Request, context: ContextDep, visitor: ProjectVisitorDep
) -> Response:
    """List the project's CA certificates with the upload form."""
    return _page(request, context, visitor, project_id)


@router.post("")
def upload(
    project_id: str,
    request: Request,
    context: ContextDep,
    visitor: ProjectFormVisitorDep,
    cert_file: Annotated[UploadFile | None, File()] = None,
    cert_type: Annotated[str, Form()] = "auto",
) -> Response:
    """Check and register an uploaded CA certificate, or show why not."""
    errors: dict[str, str] = {}
    if cert_type not in CERT_TYPE_CHOICES:
        errors["cert_type"] = (
            f"Choose one of {', '.join(CERT_TYPE_CHOICES)}; "
            f"{cert_type!r} is not a type."
        )
    encoded = b""
    if cert_file is None or not cert_file.filename:
        errors["cert_file"] = "Choose a PEM or DER certificate file."
    else:
        # One byte over the limit is enough for the store to reject it.
        encoded = cert_file.file.read(certificates.MAX_FILE_BYTES + 1)
        if not encoded:
            errors["cert_file"] = f"The file {cert_file.filename!r} is empty."
    if errors:
        return _page(request, context, visitor, project_id, errors, status_code=400)

    try:
        certificates.add_ca_certificate(
            context.db,
            project_id,
            encoded,
            cert_type=None if cert_type == "auto" else cert_type,  # type: ignore[arg-type]
            actor=visitor.actor,
        )
    except (InvalidInput, Conflict) as exc:
        field = "cert_type" if exc.reason == Reason.INVALID_INPUT else "cert_file"
        errors[field] = f"{exc.message} ({exc.reason})"
        return _page(request, context, visitor, project_id, errors, status_code=400)
    context.trust_changed(project_id)
    return redirect(f"/console/projects/{project_id}/certificates?added=1")


@router.post("/{certificate_id}/enabled")
def set_enabled(
    project_id: str,
    certificate_id: str,
    request: Request,
    context: ContextDep,
    visitor: ProjectFormVisitorDep,
    enabled: Annotated[bool, Form()],
) -> Response:
    """Start or stop trusting a CA certificate."""
    certificates.set_ca_certificate_enabled(
        context.db, project_id, certificate_id, enabled, actor=visitor.actor
    )
    context.trust_changed(project_id)
    return redirect(f"/console/projects/{project_id}/certificates")


def _page(
    request: Request,
    context: ContextDep,
    visitor: ProjectVisitorDep,
    project_id: str,
    errors: dict[str, str] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "certificates.html",
        {
            "title": "CA certificates",
            "project": projects.get_project(context.db, project_id),
            "section": "certificates",
            "certificates": certificates.list_ca_certificates(context.db, project_id),
            "cert_types": CERT_TYPE_CHOICES,
            "errors": errors or {},
            "added": request.query_params.get("added") == "1",
        },
        visitor=visitor,
        status_code=status_code,
    )
