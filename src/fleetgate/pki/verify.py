"""Device chain verification: OpenSSL path building plus project policy.

:class:`ChainVerifier` runs inside the DTLS handshake, so it is
synchronous and does no I/O. The anchors come from an
:class:`AnchorSource` that keeps them in memory. A chain is accepted
when all of these hold:

- the leaf names a known project in ``O`` and a valid certificate ID in
  ``CN``, and passes the leaf rules (serial, version, not a CA, key,
  signature algorithm, validity period widened by the clock skew);
- OpenSSL builds a path from the leaf to one of that project's
  registered CA certificates. ``X509_V_FLAG_PARTIAL_CHAIN`` makes every
  registered certificate an anchor, so a registered intermediate alone
  suffices. A root sent only by the device is never in the store, so it
  is never trusted;
- every CA certificate in the path is a v3 CA with an allowed key and
  signature algorithm, is inside its validity period, and the path is no
  longer than the project allows;
- no certificate in the path is listed in the CRL loaded for the
  registered CA certificate that issued it.

OpenSSL picks an issuer by subject and key identifier and does not try
another after a bad signature. When two registered CA certificates share
a subject, the verifier retries with each of them alone, so trust follows
the key and fingerprint rather than the subject text.

Caches: what a CA certificate's DER alone decides (its parsed form, its
fingerprint, the CA rules) is kept per certificate, and OpenSSL stores
per set of anchors. Which anchors a project trusts, their CRLs and every
validity period are read on each call from the ProjectTrust that the
source returns, so a CA added, disabled, deleted or revoked there
applies to the next chain.

Limits: revocation is checked only against CRLs loaded for registered
CA certificates, so a certificate issued by an intermediate that only
the device sends is never found revoked. With more than one group of
same-subject anchors at most ``MAX_ANCHOR_ATTEMPTS`` combinations are
tried.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import crypto

from fleetgate.errors import ChainRejected, InvalidCertificate, Reason
from fleetgate.pki import rules
from fleetgate.pki.identity import DeviceSubject, device_subject, fingerprint
from fleetgate.pki.openssl_errors import describe_openssl_error
from fleetgate.pki.rules import PolicyViolation

log = logging.getLogger(__name__)

# X509_V_FLAG_NO_CHECK_TIME (OpenSSL 1.1.0 and later), which pyOpenSSL
# does not name. Validity periods are checked here, with the clock skew.
_NO_CHECK_TIME = 0x200000
_STORE_FLAGS = crypto.X509StoreFlags.PARTIAL_CHAIN | _NO_CHECK_TIME

MAX_ANCHOR_ATTEMPTS = 8
# Entries in the per-project, per-anchor and per-anchor-set caches; the
# least recently used entry is dropped first.
MAX_CACHED_PROJECTS = 10_000
MAX_CACHED_ANCHORS = 4096
MAX_CACHED_STORES = 1024
# CA certificates that devices sent, keyed by DER; least recently used
# first out.
MAX_CACHED_SENT = 4096

_ffi = Binding.ffi


@dataclass(frozen=True)
class VerificationPolicy:
    """A project's rules on top of OpenSSL's path validation."""

    require_v3: bool = False
    # Certificates above the leaf, the anchor included.
    max_chain_depth: int = 4
    clock_skew: dt.timedelta = dt.timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_chain_depth < 1:
            raise ValueError(
                f"max_chain_depth must be at least 1, not {self.max_chain_depth}"
            )
        if self.clock_skew < dt.timedelta(0):
            raise ValueError(f"clock_skew must not be negative, not {self.clock_skew}")


@dataclass(frozen=True)
class Anchor:
    """One enabled CA certificate registered in a project."""

    certificate: x509.Certificate
    # Lowercase hex SHA-256 of the DER encoding, as fingerprint() returns.
    fingerprint: str
    ca_id: str | None = None


@dataclass(frozen=True)
class ProjectTrust:
    """The anchors and policy that verify one project's devices."""

    anchors: Sequence[Anchor]
    policy: VerificationPolicy
    # Serial numbers revoked by each anchor's CRL, keyed by the anchor's
    # fingerprint. Anchors without a CRL are absent.
    revoked: Mapping[str, frozenset[int]] = field(default_factory=dict)


class AnchorSource(Protocol):
    """Supplies a project's trust in memory; None means an unknown project."""

    def anchors_for(self, project_id: str) -> ProjectTrust | None: ...


@dataclass(frozen=True)
class VerifiedDevice:
    """The identity a verified chain proves, and the path that proved it."""

    project_id: str
    certificate_id: str
    fingerprint: str
    serial_number: int
    not_after: dt.datetime
    anchor_fingerprint: str
    # Leaf first, the registered anchor last.
    chain: tuple[x509.Certificate, ...]
    # Fingerprints of chain[1:]: the leaf's issuer first, the anchor last.
    ca_fingerprints: tuple[str, ...] = ()


# Receives the outcome of each rule when a chain is explained: the depth
# of the certificate (0 for the device's), the rule's name, and the
# violation or None when the rule holds. Verification passes none, and
# then the first broken rule raises.
Report = Callable[[int, str, PolicyViolation | None], None]


@dataclass(frozen=True)
class CandidatePath:
    """A path OpenSSL built to some of the anchors, or why it built none."""

    path: list[tuple[x509.Certificate, str]]
    anchors: Sequence[_PreparedAnchor]
    violation: PolicyViolation | None = None
    # The certificates the device sent, by fingerprint, for check_path.
    sent: Mapping[str, _SentCertificate] = field(default_factory=dict)


@dataclass(frozen=True)
class _PreparedAnchor:
    certificate: x509.Certificate
    fingerprint: str
    der: bytes
    openssl: crypto.X509
    # The rule this anchor breaks, checked once; raised if a path uses it.
    violation: PolicyViolation | None


class _SentCertificate:
    """A CA certificate as devices send it, with what its DER alone decides.

    Every device of a project sends the same intermediates, so they are
    parsed, hashed and checked against the CA rules once per DER. None
    of this depends on a project's trust, which is judged per handshake.
    """

    __slots__ = ("_checked", "_violation", "certificate", "der", "fingerprint")

    def __init__(self, certificate: x509.Certificate, der: bytes) -> None:
        self.certificate = certificate
        self.der = der
        self.fingerprint = _sha256_hex(der)
        self._checked = False
        self._violation: PolicyViolation | None = None

    def check_rules(self) -> None:
        """Raise the CA rule this certificate breaks, found at the first call."""
        if not self._checked:
            try:
                _check_ca_rules(self.certificate, _sent_role(self.certificate))
            except PolicyViolation as exc:
                self._violation = exc
            # Set last: a malformed extension raises ValueError above, and
            # the next call raises it again.
            self._checked = True
        _raise_copy(self._violation)


def _sha256_hex(der: bytes) -> str:
    # What fingerprint() returns, from the DER already at hand.
    return hashlib.sha256(der).hexdigest()


def _raise_copy(violation: PolicyViolation | None) -> None:
    # A fresh exception each time: raising a cached one again would grow
    # its traceback with every rejected handshake.
    if violation is not None:
        raise PolicyViolation(violation.reason, violation.detail)


def _sent_role(cert: x509.Certificate) -> rules.Role:
    return rules.Role("CA certificate", cert, " sent by the device")


def _address(cert: crypto.X509) -> int:
    """Return the address of the OpenSSL certificate behind ``cert``."""
    return int(_ffi.cast("uintptr_t", cert._x509))


def _registered_role(cert: x509.Certificate, cert_fingerprint: str) -> rules.Role:
    return rules.Role("registered CA certificate", cert, f" ({cert_fingerprint[:16]})")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ChainVerifier:
    """Verifies device chains against the anchors of the project they name."""

    def __init__(self, source: AnchorSource) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._anchors: collections.OrderedDict[str, _PreparedAnchor] = (
            collections.OrderedDict()
        )
        self._stores: collections.OrderedDict[frozenset[str], _AnchorStore] = (
            collections.OrderedDict()
        )
        self._sent: collections.OrderedDict[bytes, _SentCertificate] = (
            collections.OrderedDict()
        )
        self._projects: collections.OrderedDict[
            str, tuple[ProjectTrust, list[_PreparedAnchor]]
        ] = collections.OrderedDict()

    def verify(
        self,
        leaf: x509.Certificate,
        untrusted: Sequence[x509.Certificate] = (),
        *,
        now: dt.datetime | None = None,
    ) -> VerifiedDevice:
        """Return the verified identity of ``leaf``, or raise ChainRejected."""
        sent = [
            self._sent_certificate(cert.public_bytes(Encoding.DER), cert)
            for cert in untrusted
        ]
        return self._verify_chain(leaf, fingerprint(leaf), sent, None, now)

    def verify_openssl(
        self, chain: Sequence[crypto.X509], *, now: dt.datetime | None = None
    ) -> VerifiedDevice:
        """Verify a chain of pyOpenSSL certificates, leaf first, as verify() does.

        The handshake already has OpenSSL's parsed certificates, so path
        building reuses them instead of parsing each one a second time.
        Each certificate is encoded to DER once; the leaf is parsed and
        hashed from it, and the others are looked up by it.
        """
        if not chain:
            raise ValueError("cannot verify an empty chain: the leaf is required")
        ders = [crypto.dump_certificate(crypto.FILETYPE_ASN1, cert) for cert in chain]
        try:
            leaf = x509.load_der_x509_certificate(ders[0])
            sent = [self._sent_certificate(der) for der in ders[1:]]
        except (ValueError, x509.InvalidVersion) as exc:
            # OpenSSL accepts some encodings that cryptography rejects,
            # such as X.509 v2; a device sending one is refused like any
            # other malformed certificate.
            raise ChainRejected(
                f"cannot verify chain: a certificate is malformed ({exc})",
                reason=Reason.MALFORMED_CERTIFICATE,
            ) from exc
        return self._verify_chain(leaf, _sha256_hex(ders[0]), sent, list(chain), now)

    def _verify_chain(
        self,
        leaf: x509.Certificate,
        leaf_fingerprint: str,
        sent: list[_SentCertificate],
        openssl_chain: list[crypto.X509] | None,
        now: dt.datetime | None,
    ) -> VerifiedDevice:
        subject = device_subject(leaf)
        try:
            trust = self._source.anchors_for(subject.project_id)
            if trust is None:
                raise PolicyViolation(
                    Reason.UNKNOWN_PROJECT,
                    f"project {subject.project_id!r} does not exist",
                )
            path = self._verify(
                leaf, sent, openssl_chain, trust, subject, now or _utcnow()
            )
        except PolicyViolation as exc:
            raise ChainRejected(
                f"cannot verify device certificate: {exc.detail}",
                reason=exc.reason,
                project_id=subject.project_id,
                certificate_id=subject.certificate_id,
                fingerprint=leaf_fingerprint,
            ) from None
        # cryptography parses names and extensions only when they are read,
        # and OpenSSL parses a certificate again, so a malformed field can
        # surface here as ValueError, TypeError or crypto.Error.
        except (ValueError, TypeError, crypto.Error) as exc:
            raise ChainRejected(
                f"cannot verify device certificate: a certificate of the chain "
                f"is malformed ({exc})",
                reason=Reason.MALFORMED_CERTIFICATE,
                project_id=subject.project_id,
                certificate_id=subject.certificate_id,
                fingerprint=leaf_fingerprint,
            ) from exc

        return VerifiedDevice(
            project_id=subject.project_id,
            certificate_id=subject.certificate_id,
            fingerprint=leaf_fingerprint,
            serial_number=leaf.serial_number,
            not_after=leaf.not_valid_after_utc,
            anchor_fingerprint=path[-1][1],
            chain=tuple(cert for cert, _ in path),
            ca_fingerprints=tuple(cert_fingerprint for _, cert_fingerprint in path[1:]),
        )

    def _verify(
        self,
        leaf: x509.Certificate,
        sent: list[_SentCertificate],
        openssl_chain: list[crypto.X509] | None,
        trust: ProjectTrust,
        subject: DeviceSubject,
        now: dt.datetime,
    ) -> list[tuple[x509.Certificate, str]]:
        policy = trust.policy
        check_leaf(leaf, policy, now)
        self.check_sent(sent, trust, subject.project_id)

        first_violation: PolicyViolation | None = None
        candidates = self._candidate_paths(
            leaf, sent, trust, subject.project_id, openssl_chain
        )
        for attempt, candidate in enumerate(candidates):
            try:
                if candidate.violation is not None:
                    raise candidate.violation
                check_path(
                    candidate.path,
                    candidate.anchors,
                    policy,
                    now,
                    trust.revoked,
                    sent=candidate.sent,
                )
            except PolicyViolation as exc:
                first_violation = first_violation or exc
                continue
            if attempt:
                log.debug(
                    "chain verified with anchor subset %d project=%s",
                    attempt,
                    subject.project_id,
                )
            return candidate.path
        assert first_violation is not None
        raise first_violation

    def check_sent(
        self,
        untrusted: Sequence[object],
        trust: ProjectTrust,
        project_id: str,
        report: Report | None = None,
    ) -> None:
        """Check how many certificates the device sent and that anchors exist."""
        _apply(report, 1, "certificates sent", _check_sent_length, untrusted, trust)
        _apply(
            report,
            1,
            "enabled CA certificates",
            _check_has_anchors,
            self._prepared_for(project_id, trust),
            project_id,
        )

    def candidate_paths(
        self,
        leaf: x509.Certificate,
        untrusted: Sequence[x509.Certificate],
        trust: ProjectTrust,
        project_id: str,
        now: dt.datetime,
        openssl_chain: list[crypto.X509] | None = None,
    ) -> Iterator[CandidatePath]:
        """Yield the path built to all anchors, then to each same-subject variant.

        The caller runs :func:`check_path` on each; the first path that
        passes is the verified one. ``now`` is unused: the path does not
        depend on the time, which check_path judges.
        """
        sent = [
            self._sent_certificate(cert.public_bytes(Encoding.DER), cert)
            for cert in untrusted
        ]
        return self._candidate_paths(leaf, sent, trust, project_id, openssl_chain)

    def _candidate_paths(
        self,
        leaf: x509.Certificate,
        sent: list[_SentCertificate],
        trust: ProjectTrust,
        project_id: str,
        openssl_chain: list[crypto.X509] | None,
    ) -> Iterator[CandidatePath]:
        anchors = self._prepared_for(project_id, trust)
        if not anchors:
            return
        if openssl_chain is None:
            openssl_leaf = crypto.X509.from_cryptography(leaf)
            openssl_untrusted = [
                crypto.load_certificate(crypto.FILETYPE_ASN1, entry.der)
                for entry in sent
            ]
        else:
            openssl_leaf, *openssl_untrusted = openssl_chain
        candidates = _Candidates(leaf, sent, openssl_untrusted)
        for subset in _anchor_subsets(anchors):
            try:
                store = self._store(subset)
                chain = self._build_path(store, openssl_leaf, openssl_untrusted)
                path = candidates.resolve(chain, store)
            except PolicyViolation as exc:
                yield CandidatePath(path=[], anchors=subset, violation=exc)
                continue
            yield CandidatePath(
                path=path, anchors=subset, sent=candidates.by_fingerprint
            )

    def _build_path(
        self,
        store: _AnchorStore,
        leaf: crypto.X509,
        untrusted: list[crypto.X509],
    ) -> list[crypto.X509]:
        context = crypto.X509StoreContext(store.store, leaf, untrusted)
        try:
            return context.get_verified_chain()
        except crypto.X509StoreContextError as exc:
            code, depth, message = exc.errors
            blamed = exc.certificate.to_cryptography()
            reason, detail = describe_openssl_error(code, depth, message, blamed)
            if reason is Reason.NOT_A_CA:
                # OpenSSL reports only "invalid CA certificate"; the shape rule
                # names the cause (v1, CA:FALSE, keyUsage).
                rules.check_ca_shape(blamed, rules.Role("CA certificate", blamed))
            raise PolicyViolation(reason, detail) from exc

    def _prepared_for(
        self, project_id: str, trust: ProjectTrust
    ) -> list[_PreparedAnchor]:
        # A source that caches returns the same ProjectTrust object on each
        # call, so one identity check replaces a lookup per anchor.
        with self._lock:
            cached = self._projects.get(project_id)
            if cached is not None and cached[0] is trust:
                self._projects.move_to_end(project_id)
                return cached[1]

        prepared: dict[str, _PreparedAnchor] = {}
        for anchor in trust.anchors:
            entry = self._prepared_anchor(anchor)
            prepared[entry.fingerprint] = entry
        anchors = list(prepared.values())
        with self._lock:
            self._projects[project_id] = (trust, anchors)
            while len(self._projects) > MAX_CACHED_PROJECTS:
                self._projects.popitem(last=False)
        return anchors

    def _prepared_anchor(self, anchor: Anchor) -> _PreparedAnchor:
        with self._lock:
            entry = self._anchors.get(anchor.fingerprint)
            if entry is not None and entry.certificate == anchor.certificate:
                self._anchors.move_to_end(anchor.fingerprint)
                return entry

        actual = fingerprint(anchor.certificate)
        if actual != anchor.fingerprint:
            log.error(
                "anchor fingerprint mismatch ca_id=%s declared=%s actual=%s",
                anchor.ca_id or "-",
                anchor.fingerprint,
                actual,
            )
        entry = _PreparedAnchor(
            certificate=anchor.certificate,
            fingerprint=actual,
            der=anchor.certificate.public_bytes(Encoding.DER),
            openssl=crypto.X509.from_cryptography(anchor.certificate),
            violation=_anchor_violation(anchor.certificate, actual),
        )
        with self._lock:
            self._anchors[anchor.fingerprint] = entry
            while len(self._anchors) > MAX_CACHED_ANCHORS:
                self._anchors.popitem(last=False)
        return entry

    def _sent_certificate(
        self, der: bytes, cert: x509.Certificate | None = None
    ) -> _SentCertificate:
        """Return the cached entry of a CA certificate sent by a device.

        Raises ValueError or InvalidVersion when ``cert`` is None and the
        DER does not parse.
        """
        with self._lock:
            entry = self._sent.get(der)
            if entry is not None:
                self._sent.move_to_end(der)
                return entry

        if cert is None:
            cert = x509.load_der_x509_certificate(der)
        entry = _SentCertificate(cert, der)
        with self._lock:
            self._sent[der] = entry
            while len(self._sent) > MAX_CACHED_SENT:
                self._sent.popitem(last=False)
        return entry

    def _store(self, anchors: Sequence[_PreparedAnchor]) -> _AnchorStore:
        key = frozenset(anchor.fingerprint for anchor in anchors)
        with self._lock:
            store = self._stores.get(key)
            if store is not None:
                self._stores.move_to_end(key)
                return store

        # OpenSSL locks an X509_STORE internally, so concurrent handshakes
        # may share one.
        openssl_store = crypto.X509Store()
        for anchor in anchors:
            openssl_store.add_cert(anchor.openssl)
        openssl_store.set_flags(_STORE_FLAGS)
        store = _AnchorStore(
            openssl_store, {_address(anchor.openssl): anchor for anchor in anchors}
        )
        with self._lock:
            self._stores[key] = store
            while len(self._stores) > MAX_CACHED_STORES:
                self._stores.popitem(last=False)
        return store


@dataclass(frozen=True)
class _AnchorStore:
    """An OpenSSL store of some anchors, and those anchors by certificate address."""

    store: crypto.X509Store
    # The store holds a reference to each certificate and the anchors
    # here hold theirs, so no address is reused while this entry lives.
    by_address: Mapping[int, _PreparedAnchor]


def _apply(
    report: Report | None,
    depth: int,
    name: str,
    rule: Callable[..., None],
    *args: object,
) -> None:
    """Run one rule: raise its violation, or hand the outcome to ``report``."""
    if report is None:
        rule(*args)
        return
    try:
        rule(*args)
    except PolicyViolation as exc:
        report(depth, name, exc)
        return
    report(depth, name, None)


def check_leaf(
    leaf: x509.Certificate,
    policy: VerificationPolicy,
    now: dt.datetime,
    report: Report | None = None,
) -> None:
    """Apply the rules on the device certificate, in the order verify() does."""
    role = "device certificate"
    _apply(report, 0, "serial number", rules.check_serial, leaf, role)
    _apply(
        report,
        0,
        "version and extensions",
        _check_leaf_shape,
        leaf,
        policy.require_v3,
    )
    _apply(report, 0, "key type", rules.check_key, leaf, role)
    _apply(
        report, 0, "signature algorithm", rules.check_signature_algorithm, leaf, role
    )
    _apply(
        report,
        0,
        "validity period",
        _check_validity,
        leaf,
        role,
        policy,
        now,
        Reason.EXPIRED,
        Reason.NOT_YET_VALID,
    )
    _apply(report, 0, "not self-signed", _check_not_self_signed, leaf)


def _check_leaf_shape(leaf: x509.Certificate, require_v3: bool) -> None:
    rules.check_leaf_shape(leaf, require_v3=require_v3)


def _check_validity(
    cert: x509.Certificate,
    role: str | rules.Role,
    policy: VerificationPolicy,
    now: dt.datetime,
    expired: Reason,
    not_yet_valid: Reason,
) -> None:
    rules.check_validity(
        cert,
        now,
        policy.clock_skew,
        role=role,
        expired=expired,
        not_yet_valid=not_yet_valid,
    )


def _check_not_self_signed(leaf: x509.Certificate) -> None:
    # Rejected before OpenSSL, which under PARTIAL_CHAIN would trust a
    # self-signed leaf that is also registered.
    if rules.is_self_signed(leaf):
        raise PolicyViolation(Reason.UNKNOWN_CA, "device certificate is self-signed")


def _check_sent_length(untrusted: Sequence[object], trust: ProjectTrust) -> None:
    # One more than the depth allows, so a device may include its root.
    if len(untrusted) > trust.policy.max_chain_depth + 1:
        raise PolicyViolation(
            Reason.CHAIN_TOO_LONG,
            f"device sent {len(untrusted)} certificates besides its own; "
            f"the project allows at most {trust.policy.max_chain_depth} CA "
            "certificates above the device",
        )


def _check_has_anchors(anchors: Sequence[_PreparedAnchor], project_id: str) -> None:
    if not anchors:
        raise PolicyViolation(
            Reason.UNKNOWN_CA,
            f"project {project_id!r} has no enabled CA certificates",
        )


def _anchor_violation(
    cert: x509.Certificate, cert_fingerprint: str
) -> PolicyViolation | None:
    role = _registered_role(cert, cert_fingerprint)
    try:
        rules.check_ca_shape(cert, role)
        rules.check_serial(cert, role)
        rules.check_key(cert, role)
        rules.check_signature_algorithm(cert, role)
    except PolicyViolation as exc:
        return exc
    return None


def _anchor_subsets(
    anchors: list[_PreparedAnchor],
) -> Iterator[list[_PreparedAnchor]]:
    """Yield all anchors, then variants that keep one per shared subject."""
    yield anchors

    by_subject: dict[x509.Name, list[_PreparedAnchor]] = {}
    for anchor in anchors:
        by_subject.setdefault(anchor.certificate.subject, []).append(anchor)
    unique = [group[0] for group in by_subject.values() if len(group) == 1]
    shared = [group for group in by_subject.values() if len(group) > 1]
    if not shared:
        return
    choices = itertools.product(*shared)
    for choice in itertools.islice(choices, MAX_ANCHOR_ATTEMPTS):
        yield unique + list(choice)


class _Candidates:
    """Maps the certificates of an OpenSSL path back to the caller's objects."""

    def __init__(
        self,
        leaf: x509.Certificate,
        sent: list[_SentCertificate],
        openssl_sent: list[crypto.X509],
    ) -> None:
        self._leaf = leaf
        self._sent = sent
        self._sent_by_address = {
            _address(cert): entry
            for cert, entry in zip(openssl_sent, sent, strict=True)
        }
        self.by_fingerprint = {entry.fingerprint: entry for entry in sent}

    def resolve(
        self, chain: list[crypto.X509], store: _AnchorStore
    ) -> list[tuple[x509.Certificate, str]]:
        """Return (certificate, fingerprint) pairs; the leaf's is left empty."""
        # OpenSSL puts the very certificates it was given into the path,
        # so their addresses find them without encoding or hashing any.
        path = [(self._leaf, "")]
        for element in chain[1:]:
            address = _address(element)
            found = store.by_address.get(address) or self._sent_by_address.get(address)
            if found is None:
                found = self._by_der(element, store)
            path.append((found.certificate, found.fingerprint))
        return path

    def _by_der(
        self, element: crypto.X509, store: _AnchorStore
    ) -> _PreparedAnchor | _SentCertificate:
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, element)
        candidates: list[_PreparedAnchor | _SentCertificate] = [
            *store.by_address.values(),
            *self._sent,
        ]
        for candidate in candidates:
            if candidate.der == der:
                return candidate
        raise PolicyViolation(
            Reason.CHAIN_INVALID,
            "OpenSSL returned a path with a certificate that is neither "
            "registered nor sent by the device",
        )


def check_path(
    path: list[tuple[x509.Certificate, str]],
    anchors: Sequence[_PreparedAnchor],
    policy: VerificationPolicy,
    now: dt.datetime,
    revoked: Mapping[str, frozenset[int]],
    report: Report | None = None,
    *,
    sent: Mapping[str, _SentCertificate] | None = None,
) -> None:
    """Apply the rules on a built path, in the order verify() does.

    ``sent`` gives the cached entries of the certificates the device
    sent, whose CA rules are then checked once per certificate.
    """
    registered = {anchor.fingerprint: anchor for anchor in anchors}
    top = len(path) - 1
    _apply(report, top, "registered anchor", _check_anchor, path, registered)
    _apply(report, top, "chain length", _check_length, top, policy)
    for depth, (cert, cert_fingerprint) in enumerate(path[1:], start=1):
        anchor = registered.get(cert_fingerprint)
        if anchor is not None:
            role = _registered_role(cert, cert_fingerprint)
            _apply(report, depth, "CA rules", _check_anchor_rules, anchor)
        elif sent is not None and cert_fingerprint in sent:
            role = _sent_role(cert)
            _apply(report, depth, "CA rules", sent[cert_fingerprint].check_rules)
        else:
            role = _sent_role(cert)
            _apply(report, depth, "CA rules", _check_ca_rules, cert, role)
        _apply(
            report,
            depth,
            "validity period",
            _check_validity,
            cert,
            role,
            policy,
            now,
            Reason.CA_EXPIRED,
            Reason.CA_NOT_YET_VALID,
        )
    if not revoked:
        return
    # RFC 5280, section 6.3.3: a CRL lists serials of one issuer, so each
    # certificate is looked up in the CRL of the one above it.
    for depth, ((cert, _), (_, issuer_fingerprint)) in enumerate(
        itertools.pairwise(path)
    ):
        serials = revoked.get(issuer_fingerprint)
        if serials is not None:
            _apply(
                report,
                depth,
                "revocation",
                _check_not_revoked,
                cert,
                serials,
                issuer_fingerprint,
            )


def _check_anchor(
    path: list[tuple[x509.Certificate, str]], registered: Mapping[str, object]
) -> None:
    # OpenSSL returns a one-certificate path only for a leaf in the store.
    if len(path) < 2 or path[-1][1] not in registered:
        raise PolicyViolation(
            Reason.UNKNOWN_CA, "the path does not end at a registered CA certificate"
        )


def _check_length(top: int, policy: VerificationPolicy) -> None:
    if top > policy.max_chain_depth:
        raise PolicyViolation(
            Reason.CHAIN_TOO_LONG,
            f"the path has {top} CA certificates above the device; "
            f"the project allows at most {policy.max_chain_depth}",
        )


def _check_anchor_rules(anchor: _PreparedAnchor) -> None:
    _raise_copy(anchor.violation)


def _check_not_revoked(
    cert: x509.Certificate, serials: frozenset[int], issuer_fingerprint: str
) -> None:
    if cert.serial_number in serials:
        raise PolicyViolation(
            Reason.REVOKED,
            f"certificate with serial {cert.serial_number:#x} is revoked "
            f"by the CRL of CA certificate {issuer_fingerprint[:16]}",
        )


def _check_ca_rules(cert: x509.Certificate, role: rules.Role) -> None:
    rules.check_ca_shape(cert, role)
    rules.check_serial(cert, role)
    rules.check_key(cert, role)
    rules.check_signature_algorithm(cert, role)


def check_ca_certificate(
    cert: x509.Certificate,
    *,
    cert_type: Literal["root", "intermediate"],
    now: dt.datetime | None = None,
) -> None:
    """Raise InvalidCertificate unless ``cert`` may be registered as a CA."""
    if cert_type not in ("root", "intermediate"):
        raise ValueError(
            f"cert_type must be 'root' or 'intermediate', not {cert_type!r}"
        )
    role = rules.Role(f"{cert_type} certificate", cert)
    try:
        _check_is_ca(cert)
        _check_ca_rules(cert, role)
        rules.check_critical_extensions(cert, role)
        if cert_type == "root":
            _check_root(cert, role)
        elif rules.is_self_signed(cert):
            raise PolicyViolation(
                Reason.INTERMEDIATE_SELF_SIGNED,
                f"{role} is self-signed; register it as a root",
            )
        # A CA that is not valid yet may be registered ahead of time, but
        # an expired one would only reject chains.
        checked_at = now or _utcnow()
        if checked_at > cert.not_valid_after_utc:
            raise PolicyViolation(
                Reason.CA_EXPIRED,
                f"{role} expired at {cert.not_valid_after_utc.isoformat()}",
            )
    except PolicyViolation as exc:
        raise InvalidCertificate(
            f"cannot use CA certificate: {exc.detail}", reason=exc.reason
        ) from None


def _check_is_ca(cert: x509.Certificate) -> None:
    # The message names no type, because a device certificate is neither
    # a root nor an intermediate, and the type may be a guess from the
    # issuer.
    role = rules.Role("certificate", cert)
    self_signed = rules.is_self_signed(cert)
    if cert.version != x509.Version.v3:
        # A self-signed v1 certificate is an old-style root, which
        # check_ca_shape rejects for its version.
        if self_signed:
            return
        shape = f"it is X.509 {cert.version.name}, which has no basicConstraints"
    else:
        extensions = rules.read_extensions(cert, role)
        try:
            constraints = extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            shape = "it has no basicConstraints extension"
        else:
            if constraints.value.ca:
                return
            shape = "its basicConstraints say CA:FALSE"
    if self_signed:
        advice = "make the root again with basicConstraints CA:TRUE"
    else:
        advice = (
            "if it is a device certificate, use the CA certificate that "
            "issued it instead"
        )
    # RFC 5280, section 4.2.1.9: only cA TRUE lets a key sign certificates.
    raise PolicyViolation(
        Reason.NOT_A_CA,
        f"{role} is not a CA certificate, because {shape}; {advice}",
    )


def _check_root(cert: x509.Certificate, role: rules.Role) -> None:
    if cert.issuer != cert.subject:
        raise PolicyViolation(
            Reason.ROOT_NOT_SELF_SIGNED,
            f"{role} is issued by {cert.issuer.rfc4514_string()!r}; "
            "register it as an intermediate",
        )
    if not rules.is_self_signed(cert):
        raise PolicyViolation(
            Reason.BAD_SIGNATURE, f"{role} has a self-signature that does not verify"
        )
