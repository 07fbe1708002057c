"""Bounded fuzzing of certificate loading and chain verification with Hypothesis.

Mutated DER and PEM of a valid chain, and random bytes, go through
:func:`load_certificates` and then :meth:`ChainVerifier.verify`. Only
:class:`FleetgateError` subclasses may escape; any other exception is a
bug. The example count keeps the run to a few seconds.
"""

from __future__ import annotations

import base64
import contextlib
import warnings

from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetgate.errors import FleetgateError
from fleetgate.pki import tools
from fleetgate.pki.identity import load_certificates
from fleetgate.pki.verify import ChainVerifier

from .conftest import PROJECT, StaticSource

_ROOT_KEY, _ROOT = tools.make_root("Fuzz Root")
_INTERMEDIATE_KEY, _INTERMEDIATE = tools.make_intermediate(
    _ROOT_KEY, _ROOT, "Fuzz Intermediate"
)
_CSR = tools.make_device_csr(tools.make_device_key(), PROJECT, "dev-fuzz")
_LEAF = tools.sign_device_csr(_CSR, _INTERMEDIATE_KEY, _INTERMEDIATE, version="v3")
SEEDS = [cert.public_bytes(Encoding.DER) for cert in (_LEAF, _INTERMEDIATE)]

_SOURCE = StaticSource()
_SOURCE.register(PROJECT, [_ROOT])
VERIFIER = ChainVerifier(_SOURCE)


@st.composite
def mutated_der(draw: st.DrawFn) -> bytes:
    """A seed certificate with a few bytes overwritten, inserted or cut."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "set", "set", "insert", "cut"]))
        if action == "set":
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data.insert(position, draw(st.integers(0, 255)))
        else:
            del data[position : position + draw(st.integers(1, 16))]
    return bytes(data)


def as_pem(*ders: bytes) -> bytes:
    blocks = []
    for der in ders:
        body = base64.encodebytes(der)
        blocks.append(
            b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"
        )
    return b"".join(blocks)


inputs = st.one_of(
    st.binary(max_size=600),
    mutated_der(),
    st.builds(lambda leaf: as_pem(leaf, SEEDS[1]), mutated_der()),
    st.builds(lambda intermediate: as_pem(SEEDS[0], intermediate), mutated_der()),
)


def load_and_verify(data: bytes) -> None:
    with warnings.catch_warnings():
        # cryptography warns about negative serials that mutations create.
        warnings.simplefilter("ignore")
        chain = load_certificates(data)
        VERIFIER.verify(chain[0], chain[1:])


@settings(max_examples=400, deadline=1000)
@given(data=inputs)
def test_certificate_input_raises_only_fleetgate_errors(data: bytes) -> None:
    with contextlib.suppress(FleetgateError):
        load_and_verify(data)


def test_seed_chain_verifies() -> None:
    load_and_verify(as_pem(*SEEDS))
