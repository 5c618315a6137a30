"""Comparing redundant results (spec/job.md §Result hash and verification). Pure functions.

Each replica's output is reduced to its result hash; the majority hash wins (replica order
breaks ties, so replica 0 wins a tie); every provider of a replica whose hash differs from a
strict majority is named as mismatched, and every provider of the job when there is none (two
replicas that disagree: nobody can tell which is right). One replica gives verdict ``single``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Verdict:
    majority: str
    winner: int  # index of the first replica with the majority hash
    mismatched: tuple[str, ...]
    verdict: str  # single | agree | mismatch
    hashes: tuple[str, ...]

    def to_wire(self) -> dict[str, Any]:
        """The ``Verification`` object of job-messages.schema.json."""
        return {
            "redundancy": len(self.hashes),
            "verdict": self.verdict,
            "hashes": list(self.hashes),
            "mismatched": list(self.mismatched),
        }


def compare(hashes: Sequence[str], providers: Sequence[Sequence[str]]) -> Verdict:
    """Verdict over replica ``hashes``; ``providers[i]`` are the keys that ran replica ``i``."""
    if not hashes or len(hashes) != len(providers):
        raise ValueError("one hash and one provider list per replica are required")
    majority, votes = Counter(hashes).most_common(1)[0]  # ties: the first seen, replica order
    strict = 2 * votes > len(hashes)  # without a strict majority nobody can tell who is right
    mismatched = sorted(
        {
            k
            for h, keys in zip(hashes, providers, strict=True)
            if h != majority or (not strict and len(set(hashes)) > 1)
            for k in keys
        }
    )
    verdict = "single" if len(hashes) == 1 else ("mismatch" if mismatched else "agree")
    return Verdict(
        majority, list(hashes).index(majority), tuple(mismatched), verdict, tuple(hashes)
    )
