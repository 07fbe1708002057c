"""A project PKI for fleet operation tests: a root, an intermediate, devices."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from fleetgate.pki import tools
from fleetgate.store import certificates, projects
from fleetgate.store.database import Database

PROJECT = "acme"


class ProjectPki:
    """A project with a registered root and an unregistered intermediate."""

    def __init__(
        self,
        db: Database,
        project: str = PROJECT,
        *,
        root_days: int = 3650,
        intermediate_days: int = 1825,
        create_project: bool = True,
    ) -> None:
        self.db = db
        self.project = project
        if create_project:
            projects.create_project(db, project)
        self.root_key, self.root = tools.make_root("Fleet Root", days=root_days)
        self.intermediate_key, self.intermediate = tools.make_intermediate(
            self.root_key, self.root, "Fleet Intermediate", days=intermediate_days
        )
        pem = self.root.public_bytes(Encoding.PEM)
        self.root_record = certificates.add_ca_certificate(db, project, pem)

    def device(
        self,
        certificate_id: str,
        *,
        via_intermediate: bool = False,
        project: str | None = None,
        days: int = 30,
        not_before: dt.datetime | None = None,
    ) -> list[x509.Certificate]:
        """Issue a device certificate; return it with the chain it would send."""
        key = tools.make_device_key()
        csr = tools.make_device_csr(key, project or self.project, certificate_id)
        issuer_key, issuer = (
            (self.intermediate_key, self.intermediate)
            if via_intermediate
            else (self.root_key, self.root)
        )
        leaf = tools.sign_device_csr(
            csr, issuer_key, issuer, days=days, not_before=not_before
        )
        return [leaf, self.intermediate] if via_intermediate else [leaf]
