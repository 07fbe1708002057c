"""Explain what the gateway would do with a device certificate and its chain.

:func:`explain_certificate` reports, for one project and without
changing anything: which registered CA certificate would anchor the
chain and at what depth, which rules of the verification policy hold or
fail with their reason codes, which association rule would apply, and
which certificate of the chain expires first.

The chain's verdict is the verifier's own: the chain is passed to
:meth:`ChainVerifier.verify` with the project's current anchors. The
whole verdict (``accepted``, ``reason``) also counts the association:
a chain that verifies for a disabled device, or for a certificate ID
missing from a required manifest, is rejected with that reason. The
association is previewed only for a chain that verifies, because the
gateway never reaches it otherwise. The
per-rule outcomes come from the same rule functions, run one by one on
the path OpenSSL builds, so they never disagree with a handshake. A
certificate whose ``O`` names another project is reported as
``wrong_project`` and is not checked against that project's CAs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from cryptography import x509

from fleetgate.errors import ChainRejected, DeviceRejected, Reason
from fleetgate.pki.identity import device_subject, fingerprint
from fleetgate.pki.rules import PolicyViolation
from fleetgate.pki.verify import (
    ChainVerifier,
    ProjectTrust,
    Report,
    check_leaf,
    check_path,
)
from fleetgate.provisioning import AssociationPreview, preview_association
from fleetgate.store import certificates
from fleetgate.store.database import Database


@dataclasses.dataclass(frozen=True)
class RuleOutcome:
    """One rule of the policy applied to the certificate at ``depth``."""

    depth: int
    rule: str
    passed: bool
    reason: Reason | None = None
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class ChainMember:
    """A certificate of the chain: the leaf, an intermediate or the anchor."""

    depth: int
    role: str  # leaf | intermediate | anchor | sent
    subject: str
    fingerprint: str
    not_after: dt.datetime
    # The ID of the registered CA certificate, for a registered one.
    ca_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Explanation:
    """The gateway's verdict on one chain in one project, and its reasons."""

    project_id: str
    certificate_id: str | None
    fingerprint: str
    accepted: bool
    reason: Reason | None
    message: str
    rules: tuple[RuleOutcome, ...]
    # The verified path, or the leaf and what was sent when none was built.
    chain: tuple[ChainMember, ...]
    anchor: ChainMember | None
    # None when the chain is rejected: the association is never reached.
    association: AssociationPreview | None
    # Whether the chain alone verifies; ``accepted`` adds the association.
    chain_accepted: bool = False

    @property
    def first_expiry(self) -> ChainMember:
        """The certificate of the chain whose validity ends first."""
        return min(self.chain, key=lambda member: member.not_after)

    def to_json(self) -> dict[str, Any]:
        """Render as the API's JSON object, with camelCase names."""
        return {
            "projectId": self.project_id,
            "certificateId": self.certificate_id,
            "fingerprint": self.fingerprint,
            "accepted": self.accepted,
            "chainAccepted": self.chain_accepted,
            "reason": None if self.reason is None else str(self.reason),
            "message": self.message,
            "anchor": None if self.anchor is None else _member_json(self.anchor),
            "depth": None if self.anchor is None else self.anchor.depth,
            "rules": [
                {
                    "depth": outcome.depth,
                    "rule": outcome.rule,
                    "passed": outcome.passed,
                    "reason": None if outcome.reason is None else str(outcome.reason),
                    "detail": outcome.detail,
                }
                for outcome in self.rules
            ],
            "chain": [_member_json(member) for member in self.chain],
            "firstExpiry": _member_json(self.first_expiry),
            "association": _association_json(self.association),
        }


def _member_json(member: ChainMember) -> dict[str, Any]:
    return {
        "depth": member.depth,
        "role": member.role,
        "subject": member.subject,
        "fingerprint": member.fingerprint,
        "notAfter": member.not_after.isoformat(),
        "caId": member.ca_id,
    }


def _association_json(preview: AssociationPreview | None) -> dict[str, Any] | None:
    if preview is None:
        return None
    return {
        "rule": preview.rule,
        "deviceId": preview.device_id,
        "deviceName": preview.device_name,
        "reason": None if preview.reason is None else str(preview.reason),
        "detail": preview.detail,
    }


class _OneProject:
    """An anchor source limited to one project."""

    def __init__(self, project_id: str, trust: ProjectTrust | None) -> None:
        self._project_id = project_id
        self._trust = trust

    def anchors_for(self, project_id: str) -> ProjectTrust | None:
        return self._trust if project_id == self._project_id else None


def explain_certificate(
    db: Database,
    project_id: str,
    chain: Sequence[x509.Certificate],
    *,
    now: dt.datetime | None = None,
) -> Explanation:
    """Explain how the gateway would treat ``chain`` (leaf first) in a project.

    Reads the store only. Raises NotFound for an unknown project and
    ValueError for an empty chain.
    """
    if not chain:
        raise ValueError("cannot explain an empty chain: the leaf is required")
    checked_at = now or dt.datetime.now(dt.UTC)
    leaf, untrusted = chain[0], list(chain[1:])
    trust = certificates.trust_for(db, project_id)
    registered = {
        record.fingerprint: record.id
        for record in certificates.list_ca_certificates(db, project_id)
    }
    leaf_fingerprint = fingerprint(leaf)
    sent_chain = _sent_chain(chain, registered)

    try:
        subject = device_subject(leaf)
    except DeviceRejected as exc:
        return Explanation(
            project_id=project_id,
            certificate_id=None,
            fingerprint=leaf_fingerprint,
            accepted=False,
            reason=exc.reason,
            message=exc.message,
            rules=(RuleOutcome(0, "subject", False, exc.reason, exc.message),),
            chain=sent_chain,
            anchor=None,
            association=None,
        )
    outcomes = [RuleOutcome(0, "subject", True)]
    if subject.project_id != project_id:
        detail = (
            f"the certificate names project {subject.project_id!r} in its O, "
            f"not {project_id!r}, so the gateway verifies it there"
        )
        outcomes.append(RuleOutcome(0, "project", False, Reason.WRONG_PROJECT, detail))
        return Explanation(
            project_id=project_id,
            certificate_id=subject.certificate_id,
            fingerprint=leaf_fingerprint,
            accepted=False,
            reason=Reason.WRONG_PROJECT,
            message=f"cannot verify device certificate: {detail}",
            rules=tuple(outcomes),
            chain=sent_chain,
            anchor=None,
            association=None,
        )
    outcomes.append(RuleOutcome(0, "project", True))

    verifier = ChainVerifier(_OneProject(project_id, trust))
    reason: Reason | None = None
    message = "the chain verifies"
    try:
        verified = verifier.verify(leaf, untrusted, now=checked_at)
    except ChainRejected as exc:
        reason, message = exc.reason, exc.message
        path: list[tuple[x509.Certificate, str]] = []
    else:
        path = list(zip(verified.chain, ("", *verified.ca_fingerprints), strict=True))
    # A malformed certificate raises in the rules too, so only the
    # verdict is reported for one.
    if trust is not None and reason is not Reason.MALFORMED_CERTIFICATE:
        outcomes.extend(_rule_outcomes(verifier, trust, leaf, untrusted, checked_at))

    members = _path_members(path, registered) if path else sent_chain
    chain_accepted = reason is None
    association = None
    if chain_accepted:
        association = preview_association(
            db, project_id=project_id, certificate_id=subject.certificate_id
        )
        if association.reason is not None:
            reason = association.reason
            message = f"the chain verifies, but {association.detail}"
    return Explanation(
        project_id=project_id,
        certificate_id=subject.certificate_id,
        fingerprint=leaf_fingerprint,
        accepted=reason is None,
        reason=reason,
        message=message,
        rules=tuple(outcomes),
        chain=members,
        anchor=members[-1] if path else None,
        association=association,
        chain_accepted=chain_accepted,
    )


def _rule_outcomes(
    verifier: ChainVerifier,
    trust: ProjectTrust,
    leaf: x509.Certificate,
    untrusted: list[x509.Certificate],
    now: dt.datetime,
) -> list[RuleOutcome]:
    """Run every rule and record each outcome instead of stopping at the first."""
    outcomes: list[RuleOutcome] = []
    project_id = device_subject(leaf).project_id
    check_leaf(leaf, trust.policy, now, _recorder(outcomes))
    verifier.check_sent(untrusted, trust, project_id, _recorder(outcomes))
    # The path that verify() accepts is the first whose rules all hold;
    # when none does, the first path built shows where it breaks.
    first: list[RuleOutcome] | None = None
    for candidate in verifier.candidate_paths(leaf, untrusted, trust, project_id, now):
        attempt: list[RuleOutcome] = []
        collect = _recorder(attempt)
        if candidate.violation is not None:
            depth = len(untrusted) + 1
            collect(depth, "path to a registered CA", candidate.violation)
        else:
            collect(len(candidate.path) - 1, "path to a registered CA", None)
            check_path(
                candidate.path,
                candidate.anchors,
                trust.policy,
                now,
                trust.revoked,
                collect,
            )
        if all(outcome.passed for outcome in attempt):
            return outcomes + attempt
        first = first if first is not None else attempt
    return outcomes + (first or [])


def _recorder(outcomes: list[RuleOutcome]) -> Report:
    def record(depth: int, rule: str, violation: PolicyViolation | None) -> None:
        if violation is None:
            outcomes.append(RuleOutcome(depth, rule, True))
        else:
            outcomes.append(
                RuleOutcome(depth, rule, False, violation.reason, violation.detail)
            )

    return record


def _sent_chain(
    chain: Sequence[x509.Certificate], registered: dict[str, str]
) -> tuple[ChainMember, ...]:
    members = []
    for depth, cert in enumerate(chain):
        cert_fingerprint = fingerprint(cert)
        members.append(
            ChainMember(
                depth=depth,
                role="leaf" if depth == 0 else "sent",
                subject=cert.subject.rfc4514_string(),
                fingerprint=cert_fingerprint,
                not_after=cert.not_valid_after_utc,
                ca_id=registered.get(cert_fingerprint),
            )
        )
    return tuple(members)


def _path_members(
    path: list[tuple[x509.Certificate, str]], registered: dict[str, str]
) -> tuple[ChainMember, ...]:
    members = []
    top = len(path) - 1
    for depth, (cert, cert_fingerprint) in enumerate(path):
        if depth == 0:
            role, cert_fingerprint = "leaf", fingerprint(cert)
        else:
            role = "anchor" if depth == top else "intermediate"
        members.append(
            ChainMember(
                depth=depth,
                role=role,
                subject=cert.subject.rfc4514_string(),
                fingerprint=cert_fingerprint,
                not_after=cert.not_valid_after_utc,
                ca_id=registered.get(cert_fingerprint) if depth else None,
            )
        )
    return tuple(members)
