"""Time ChainVerifier.verify against a bare pyOpenSSL X509Store check.

Run by hand: ``python bench/verify.py [--iterations N]``. Both sides
verify the same P-256 chains against a registered root. The bare check
gets pre-converted pyOpenSSL objects and a ready store, so it measures
what OpenSSL alone costs. The full check starts from pyca/cryptography
certificates and applies the whole policy. "sent" counts the certificates
the device presents: the leaf and any intermediates.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

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

PROJECT = "bench"
REPEATS = 5
# Stop repeating once one measurement has taken this long, in seconds.
TIME_BUDGET = 10.0


class _Source:
    def __init__(self, root: x509.Certificate) -> None:
        anchors = [Anchor(root, fingerprint(root))]
        self._trust = ProjectTrust(anchors, VerificationPolicy())

    def anchors_for(self, project_id: str) -> ProjectTrust | None:
        return self._trust if project_id == PROJECT else None


def make_chain(
    sent: int,
) -> tuple[x509.Certificate, list[x509.Certificate], x509.Certificate]:
    """Return a leaf, the intermediates it is sent with, and the root."""
    issuer_key, issuer_cert = root_key, root_cert = tools.make_root()
    intermediates: list[x509.Certificate] = []
    for index in range(sent - 1):
        issuer_key, issuer_cert = tools.make_intermediate(
            issuer_key, issuer_cert, f"Intermediate {index}"
        )
        intermediates.insert(0, issuer_cert)
    csr = tools.make_device_csr(tools.make_device_key(), PROJECT, "device-1")
    leaf = tools.sign_device_csr(csr, issuer_key, issuer_cert)
    return leaf, intermediates, root_cert


def microseconds_per_call(call: Callable[[], object], iterations: int) -> float:
    """Return the fastest of REPEATS timings, in microseconds per call."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(iterations):
            call()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed / iterations * 1e6)
        if elapsed > TIME_BUDGET:
            break
    return best


def measure(sent: int, iterations: int) -> tuple[float, float]:
    """Return (bare, full) microseconds per verification of one chain."""
    leaf, intermediates, root = make_chain(sent)

    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(root))
    store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    openssl_leaf = crypto.X509.from_cryptography(leaf)
    openssl_sent = [crypto.X509.from_cryptography(c) for c in intermediates]

    def bare() -> None:
        context = crypto.X509StoreContext(store, openssl_leaf, openssl_sent)
        context.verify_certificate()

    verifier = ChainVerifier(_Source(root))

    def full() -> None:
        verifier.verify(leaf, intermediates)

    return (
        microseconds_per_call(bare, iterations),
        microseconds_per_call(full, iterations),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--iterations", type=int, default=2000, help="Verifications per timing."
    )
    iterations = parser.parse_args().iterations

    print(f"{'sent':>4} {'path':>4} {'bare us':>9} {'full us':>9} {'ratio':>6}")
    for sent in (1, 2, 3):
        bare_us, full_us = measure(sent, iterations)
        ratio = full_us / bare_us
        # The path adds the registered root to what the device sent.
        print(f"{sent:>4} {sent + 1:>4} {bare_us:>9.1f} {full_us:>9.1f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
