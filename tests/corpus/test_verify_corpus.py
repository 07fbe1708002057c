"""The corpus against the verification library: load, then ChainVerifier.

Every case either verifies or raises a FleetgateError whose reason is
the one cases.toml names. Any other exception fails the case.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from fleetgate.errors import FleetgateError
from fleetgate.pki.identity import fingerprint, load_certificates
from fleetgate.pki.verify import (
    Anchor,
    ChainVerifier,
    ProjectTrust,
    VerificationPolicy,
    VerifiedDevice,
)

from . import (
    ACCEPTED,
    PROJECT_A,
    PROJECT_B,
    SAME_NAME,
    CorpusCase,
    case_params,
    load_cases,
    write_corpus,
)

SKEW = VerificationPolicy().clock_skew


class CorpusAnchors:
    """An AnchorSource with each corpus project's registered root."""

    def __init__(self, folder: Path) -> None:
        self._trust: dict[str, ProjectTrust] = {}
        for project_id in (PROJECT_A, PROJECT_B):
            pem = (folder / "anchors" / f"{project_id}.pem").read_bytes()
            root = load_certificates(pem)[0]
            self._trust[project_id] = ProjectTrust(
                anchors=[Anchor(root, fingerprint(root))],
                policy=VerificationPolicy(),
            )

    def anchors_for(self, project_id: str) -> ProjectTrust | None:
        """Return a corpus project's trust, or None for any other name."""
        return self._trust.get(project_id)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly generated corpus folder."""
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus(folder)
    return folder


@pytest.fixture(scope="module")
def verifier(corpus: Path) -> ChainVerifier:
    """One verifier for the whole corpus, so its caches see every case."""
    return ChainVerifier(CorpusAnchors(corpus))


def load_chain(corpus: Path, case: CorpusCase) -> list[x509.Certificate]:
    return load_certificates((corpus / case.file).read_bytes())


def verify(
    verifier: ChainVerifier,
    chain: list[x509.Certificate],
    now: dt.datetime | None = None,
) -> VerifiedDevice:
    return verifier.verify(chain[0], chain[1:], now=now)


def outcome(verifier: ChainVerifier, corpus: Path, case: CorpusCase) -> str:
    """Return "accepted" or the reason code of the FleetgateError raised."""
    try:
        verify(verifier, load_chain(corpus, case))
    except FleetgateError as exc:
        return str(exc.reason)
    return ACCEPTED


def test_manifest_names_every_generated_file(corpus: Path) -> None:
    named = {case.file for case in load_cases()}
    written = {
        path.name for path in corpus.iterdir() if path.suffix in (".pem", ".der")
    }
    assert named == written


def test_manifest_ids_are_unique() -> None:
    ids = [case.id for case in load_cases()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", case_params())
def test_corpus_case_outcome(
    case: CorpusCase, corpus: Path, verifier: ChainVerifier
) -> None:
    assert outcome(verifier, corpus, case) == case.expect, case.about


def test_accepted_cases_name_their_certificate_id(
    corpus: Path, verifier: ChainVerifier
) -> None:
    for case in load_cases():
        if case.expect != ACCEPTED:
            continue
        verified = verify(verifier, load_chain(corpus, case))
        assert verified.project_id == PROJECT_A, case.id
        assert verified.certificate_id in (f"dev-{case.stem}", SAME_NAME), case.id


def test_string_encodings_name_one_device(
    corpus: Path, verifier: ChainVerifier
) -> None:
    cases = {case.stem: case for case in load_cases()}
    utf8 = verify(verifier, load_chain(corpus, cases["utf8string-cn"]))
    bmp = verify(verifier, load_chain(corpus, cases["bmpstring-cn"]))
    assert utf8.certificate_id == SAME_NAME
    assert bmp.certificate_id == SAME_NAME
    assert utf8.fingerprint != bmp.fingerprint


def test_future_not_before_accepted_within_skew(
    corpus: Path, verifier: ChainVerifier
) -> None:
    case = next(case for case in load_cases() if case.stem == "not-before-future")
    chain = load_chain(corpus, case)
    not_before = chain[0].not_valid_before_utc

    inside = verify(verifier, chain, now=not_before - SKEW + dt.timedelta(seconds=1))
    assert inside.certificate_id == "dev-not-before-future"
    with pytest.raises(FleetgateError) as refused:
        verify(verifier, chain, now=not_before - SKEW - dt.timedelta(seconds=1))
    assert refused.value.reason == "not_yet_valid"


def test_expired_intermediate_accepted_before_expiry(
    corpus: Path, verifier: ChainVerifier
) -> None:
    case = next(case for case in load_cases() if case.stem == "expired-intermediate")
    chain = load_chain(corpus, case)
    before_expiry = chain[1].not_valid_after_utc - dt.timedelta(days=1)

    verified = verify(verifier, chain, now=before_expiry)

    assert verified.certificate_id == "dev-expired-intermediate"
