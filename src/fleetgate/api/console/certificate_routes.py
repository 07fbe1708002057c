"""Console pages for a project's CA certificates: list, upload, enable.

An upload runs :func:`fleetgate.store.certificates.add_ca_certificate`,
the same checks as the API's upload, and shows each rejection next to
the form field it concerns, a file over the size limit included.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from fleetgate.api.console.pages import (
    ConsoleRoute,
    confirm_disable,
    redirect,
    render,
    shows_oversized_form,
    upload_file_name,
)
from fleetgate.api.console.visitor import (
    ProjectFormVisitorDep,
    ProjectVisitorDep,
    Visitor,
    check_same_origin,
    current_visitor,
)
from fleetgate.api.context import ApiContext, ContextDep, get_context
from fleetgate.api.errors import OversizedBody
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


def _file_too_large(filename: str, size: str) -> str:
    named = f"The file {filename!r}" if filename else "The file"
    return (
        f"{named} is {size}, but a CA certificate file may be "
        f"at most {certificates.MAX_FILE_BYTES // 1024} KiB "
        f"({certificates.MAX_FILE_BYTES} bytes). Choose a file with one PEM "
        "or DER certificate."
    )


def _oversized_upload(request: Request, oversized: OversizedBody) -> Response:
    """Show the upload form with a size error, changing nothing."""
    context = get_context(request)
    visitor = current_visitor(request, context)
    check_same_origin(request)
    project_id = request.path_params["project_id"]
    visitor.require_project(project_id)
    filename = upload_file_name(oversized, "cert_file")
    error = _file_too_large(filename, f"larger than {oversized.limit // 1024} KiB")
    return _page(
        request,
        context,
        visitor,
        project_id,
        {"cert_file": error},
        status_code=413,
    )


@router.post("")
@shows_oversized_form(_oversized_upload)
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
    filename = cert_file.filename if cert_file is not None else None
    if cert_file is None or not filename:
        errors["cert_file"] = "Choose a PEM or DER certificate file."
    else:
        # One byte over the limit is enough to tell that the file is too large.
        encoded = cert_file.file.read(certificates.MAX_FILE_BYTES + 1)
        if not encoded:
            errors["cert_file"] = f"The file {filename!r} is empty."
        elif len(encoded) > certificates.MAX_FILE_BYTES:
            size = cert_file.size or len(encoded)
            errors["cert_file"] = _file_too_large(
                filename, f"{size // 1024} KiB ({size} bytes)"
            )
            return _page(request, context, visitor, project_id, errors, status_code=413)
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
        errors[field] = (
            f"The file {filename!r} was rejected: {exc.message} ({exc.reason})"
        )
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
    confirmed: Annotated[bool, Form()] = False,
) -> Response:
    """Start trusting a CA certificate, or stop once confirmed."""
    if not enabled and not confirmed:
        ca = certificates.get_ca_certificate(context.db, project_id, certificate_id)
        page = f"/console/projects/{project_id}/certificates"
        return confirm_disable(
            request,
            visitor,
            projects.get_project(context.db, project_id),
            title="Disable CA certificate",
            question=f"Stop trusting the CA certificate {ca.subject}?",
            consequence=(
                "New handshakes from devices whose chains it anchors are refused "
                "until you enable it again."
            ),
            action=f"{page}/{certificate_id}/enabled",
            cancel_url=page,
        )
    certificates.set_ca_certificate_enabled(
        context.db, project_id, certificate_id, enabled, actor=visitor.actor
    )
    context.trust_changed(project_id)
    return redirect(f"/console/projects/{project_id}/certificates")


def _page(
    request: Request,
    context: ApiContext,
    visitor: Visitor,
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
