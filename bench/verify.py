"""Time ChainVerifier against a bare pyOpenSSL X509Store check, by fleet size.

Run by hand: ``python bench/verify.py [--iterations N] [--cas 100,10000]``.
For each count of registered CA certificates, the script spreads them
over projects of ``CAS_PER_PROJECT`` roots each. It issues a P-256
device chain in every project, sent as the leaf alone, with one or with
two intermediates ("sent" counts what the device presents). Each
timing cycles through the chains of all projects, so the per-project
caches hold as many entries as the fleet has projects.

The bare check gets a ready store of the project's roots and
pre-converted pyOpenSSL objects, so it measures what OpenSSL alone
costs. "full" is ``ChainVerifier.verify`` from pyca/cryptography
certificates, and "handshake" is ``ChainVerifier.verify_openssl`` from
the pyOpenSSL objects that the DTLS handshake already holds, which is
what ``fleetgate serve`` runs. Both apply the whole policy.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence

from cryptography import x509
from OpenSSL import crypto

from fleetgate.pki import tools
from fleetgate.pki.identity import fingerprint
from fleetgate.pki.verify import (
    Anchor,
    ChainVerifier,
    ProjectTrust,
    VerificationPolicy,
)

CAS_PER_PROJECT = 10
REPEATS = 7
# Stop repeating once one round of the three calls has taken this long,
# in seconds.
TIME_BUDGET = 10.0
MAX_CAS = 100_000
MAX_ITERATIONS = 1_000_000


@dataclasses.dataclass(frozen=True)
class DeviceChain:
    """One project's device chain in both libraries' objects."""

    leaf: x509.Certificate
    intermediates: list[x509.Certificate]
    openssl: list[crypto.X509]
    store: crypto.X509Store


class StaticSource:
    """Serves fixed trust per project, like a warm TrustCache."""

    def __init__(self, trust: dict[str, ProjectTrust]) -> None:
        self._trust = trust

    def anchors_for(self, project_id: str) -> ProjectTrust | None:
        """Return the project's anchors, or None for an unknown project."""
        return self._trust.get(project_id)


def make_fleet(ca_count: int, sent: int) -> tuple[StaticSource, list[DeviceChain]]:
    """Register ``ca_count`` roots over projects and issue one chain per project."""
    trust: dict[str, ProjectTrust] = {}
    chains: list[DeviceChain] = []
    for index in range(max(ca_count // CAS_PER_PROJECT, 1)):
        project = f"bench-{index:05d}"
        roots = [
            tools.make_root(f"Root {index}-{number}")
            for number in range(CAS_PER_PROJECT)
        ]
        anchors = [Anchor(cert, fingerprint(cert)) for _, cert in roots]
        trust[project] = ProjectTrust(anchors, VerificationPolicy())
        chains.append(issue_chain(project, *roots[-1], sent, anchors))
    return StaticSource(trust), chains


def issue_chain(
    project: str,
    root_key: tools.PrivateKey,
    root: x509.Certificate,
    sent: int,
    anchors: Sequence[Anchor],
) -> DeviceChain:
    """Issue a leaf under ``root`` through ``sent - 1`` intermediates."""
    issuer_key, issuer = root_key, root
    intermediates: list[x509.Certificate] = []
    for depth in range(sent - 1):
        issuer_key, issuer = tools.make_intermediate(
            issuer_key, issuer, f"Intermediate {project} {depth}"
        )
        intermediates.insert(0, issuer)
    csr = tools.make_device_csr(tools.make_device_key(), project, "device-1")
    leaf = tools.sign_device_csr(csr, issuer_key, issuer)

    store = crypto.X509Store()
    for anchor in anchors:
        store.add_cert(crypto.X509.from_cryptography(anchor.certificate))
    store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    openssl = [crypto.X509.from_cryptography(c) for c in [leaf, *intermediates]]
    return DeviceChain(leaf, intermediates, openssl, store)


def microseconds_per_call(
    calls: Sequence[Callable[[DeviceChain], object]],
    chains: list[DeviceChain],
    iterations: int,
) -> list[float]:
    """Return the fastest of REPEATS timings of each call, in microseconds.

    The calls take turns within each repeat, so a burst of load from
    other processes slows all of them alike instead of one.
    """
    best = [float("inf")] * len(calls)
    for _ in range(REPEATS):
        started = time.perf_counter()
        for position, call in enumerate(calls):
            start = time.perf_counter()
            for index in range(iterations):
                call(chains[index % len(chains)])
            elapsed = time.perf_counter() - start
            best[position] = min(best[position], elapsed / iterations * 1e6)
        if time.perf_counter() - started > TIME_BUDGET:
            break
    return best


def measure(ca_count: int, sent: int, iterations: int) -> tuple[float, float, float]:
    """Return bare, full and handshake microseconds per verified chain."""
    source, chains = make_fleet(ca_count, sent)
    verifier = ChainVerifier(source)

    def bare(chain: DeviceChain) -> None:
        leaf, *untrusted = chain.openssl
        crypto.X509StoreContext(chain.store, leaf, untrusted).verify_certificate()

    def full(chain: DeviceChain) -> None:
        verifier.verify(chain.leaf, chain.intermediates)

    def handshake(chain: DeviceChain) -> None:
        verifier.verify_openssl(chain.openssl)

    # Every project is seen once first, as after a gateway's warm-up.
    for chain in chains:
        handshake(chain)
    bare_us, full_us, handshake_us = microseconds_per_call(
        [bare, full, handshake], chains, iterations
    )
    return bare_us, full_us, handshake_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--iterations", type=int, default=2000, help="Verifications per timing."
    )
    parser.add_argument(
        "--cas",
        default="100,10000",
        help="Comma-separated counts of registered CA certificates.",
    )
    options = parser.parse_args()
    if not 1 <= options.iterations <= MAX_ITERATIONS:
        parser.error(f"--iterations must be between 1 and {MAX_ITERATIONS}")
    counts = [int(value) for value in options.cas.split(",")]
    if not all(CAS_PER_PROJECT <= count <= MAX_CAS for count in counts):
        parser.error(f"--cas values must be between {CAS_PER_PROJECT} and {MAX_CAS}")

    header = f"{'CAs':>6} {'projects':>8} {'sent':>4} {'path':>4} {'bare us':>8}"
    header += f" {'full us':>8} {'ratio':>6} {'hs us':>8} {'ratio':>6}"
    print(header)
    for count in counts:
        for sent in (1, 2, 3):
            bare_us, full_us, handshake_us = measure(count, sent, options.iterations)
            # The path adds the registered root to what the device sent.
            line = f"{count:>6} {count // CAS_PER_PROJECT:>8} {sent:>4}"
            line += f" {sent + 1:>4} {bare_us:>8.1f} {full_us:>8.1f}"
            line += f" {full_us / bare_us:>6.2f} {handshake_us:>8.1f}"
            line += f" {handshake_us / bare_us:>6.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
