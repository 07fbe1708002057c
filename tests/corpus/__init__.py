"""The bad-input certificate corpus: cases.toml and the files it names.

:func:`load_cases` reads the manifest, and :func:`write_corpus` builds
the files it names into a folder (see ``make_corpus.py``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from .make_corpus import PROJECT_A, PROJECT_B, SAME_NAME, write_corpus

MANIFEST = Path(__file__).with_name("cases.toml")
ACCEPTED = "accepted"

__all__ = [
    "ACCEPTED",
    "PROJECT_A",
    "PROJECT_B",
    "SAME_NAME",
    "CorpusCase",
    "case_params",
    "load_cases",
    "write_corpus",
]


@dataclass(frozen=True)
class CorpusCase:
    """One manifest entry: a chain file and its expected outcomes."""

    id: str
    file: str
    expect: str
    about: str
    # The outcome of a real handshake, where it differs from ``expect``.
    over_dtls: str | None = None

    @property
    def stem(self) -> str:
        """The file name without its suffix, shared by the key file."""
        return Path(self.file).stem


def load_cases() -> list[CorpusCase]:
    """Read every case of ``cases.toml`` in file order."""
    with MANIFEST.open("rb") as manifest:
        entries = tomllib.load(manifest)["case"]
    return [CorpusCase(**entry) for entry in entries]


def case_params() -> list[object]:
    """Return the cases as pytest parameters with the manifest's ids."""
    return [pytest.param(case, id=case.id) for case in load_cases()]
