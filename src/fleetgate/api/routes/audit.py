"""``/v1/projects/{id}/audit``: who changed what in a project, newest first.

Entries come from the API (actor: the API key ID) and from the command
line (actor ``cli``). Admin-key actions outside any project, such as
creating an admin key, are recorded but not listed here.
"""

from __future__ import annotations

from fastapi import APIRouter

from fleetgate.api.auth import ScopeDep
from fleetgate.api.context import ContextDep
from fleetgate.api.paging import DEFAULT_PER_PAGE, PageQuery, PerPageQuery
from fleetgate.api.schemas import AuditEntry, Page
from fleetgate.store import audit

router = APIRouter(prefix="/v1/projects/{project_id}/audit", tags=["audit"])


@router.get("", summary="List a project's audit log")
def list_audit_entries(
    context: ContextDep,
    scope: ScopeDep,
    page: PageQuery = 0,
    per_page: PerPageQuery = DEFAULT_PER_PAGE,
) -> Page[AuditEntry]:
    """Return one page of the project's audit log, newest first."""
    result = audit.list_audit_entries(
        context.db, scope.project_id, page=page, per_page=per_page
    )
    return Page[AuditEntry](
        items=[AuditEntry.of(record) for record in result.items],
        page=result.page,
        per_page=result.per_page,
        total=result.total,
    )
