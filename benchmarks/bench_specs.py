"""Schema validation on the per-token path: jsonschema (the previous path) vs the compiled predicate.

Run: ``.venv/bin/python benchmarks/bench_specs.py [--number 2000 --repeat 7]``

Cases (each a message the pipeline sends or receives once per token or per job):

1. a ``stage.forward`` envelope, 2. a ``stage.output`` envelope, 3. a ``job.submit`` envelope —
   jsonschema: the previous ``messages._check`` (``Draft202012Validator.is_valid`` over the
   ref-inlined envelope schema, then over the body's ``$defs`` entry); compiled: today's
   ``messages._check`` (the same two steps through :mod:`infernet_ref.specs.compiled`);
4. a worker ``stage.forward`` request header — jsonschema: the previous ``validate_data``
   (``iter_errors`` through the registry); compiled: today's ``validate_data``.

Both sides run in the same process on the same data; the script checks first that both accept
it. Figures are the best of ``--repeat`` runs of ``--number`` calls, in microseconds per call.
The machine may be shared: say so when quoting the numbers.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

from infernet_ref.node.messages import _check, _validator
from infernet_ref.specs import default_registry, validate_data

SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
PAYLOAD = {"size": 8392, "sha256": SHA, "format": "safetensors"}
FORWARD = {
    "v": 1,
    "type": "stage.forward",
    "id": "m-1842",
    "ts": 1764120000,
    "body": {"session": "s-0-1", "step": 17, "position": 41, "payload": PAYLOAD},
}
OUTPUT = {
    "v": 1,
    "type": "stage.output",
    "id": "m-1843",
    "re": "m-1842",
    "body": {"session": "s-0-1", "step": 17, "compute_ms": 3.25, "payload": PAYLOAD},
}
SUBMIT = {
    "v": 1,
    "type": "job.submit",
    "id": "m-1",
    "body": {
        "job": "j-01HZX3R8Q9ABCD",
        "model": "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
        "prompt_tokens": 12,
        "params": {"max_new_tokens": 64, "sampling": {"temperature": 0, "seed": 0}},
        "redundancy": 1,
        "stream": True,
    },
}
WORKER_FORWARD = {"op": "stage.forward", "id": 7, "session": "job-1f2e/s0"}


def old_check(msg: dict[str, Any]) -> bool:
    """The previous hot path: jsonschema over the envelope, then over the selected body."""
    from infernet_ref.node.messages import body_table

    if not _validator("job-envelope", "").is_valid(msg):
        return False
    pointer = f"/$defs/{body_table()[msg['type']]}"
    return bool(_validator("job-messages", pointer).is_valid(msg["body"]))


def old_worker(header: dict[str, Any]) -> bool:
    """The previous ``validate_data``: every error collected through the registry's validator."""
    return not list(default_registry().validator("node-worker").iter_errors(header))


def per_call_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("stage.forward envelope", lambda: old_check(FORWARD), lambda: _check(FORWARD)),
        ("stage.output envelope", lambda: old_check(OUTPUT), lambda: _check(OUTPUT)),
        ("job.submit envelope", lambda: old_check(SUBMIT), lambda: _check(SUBMIT)),
        (
            "worker stage.forward request",
            lambda: old_worker(WORKER_FORWARD),
            lambda: validate_data(WORKER_FORWARD, "node-worker"),
        ),
    ]
    for name, old, new in cases:  # both paths must accept the data before it is timed
        assert old() is True, name
        new()
    print(f"python {platform.python_version()} on {platform.machine()}; best of {args.repeat}x")
    print(f"{'case':32} {'jsonschema µs':>14} {'compiled µs':>12} {'speed-up':>9}")
    for name, old, new in cases:
        old_us = per_call_us(old, max(args.number // 10, 50), args.repeat)
        new_us = per_call_us(new, args.number, args.repeat)
        print(f"{name:32} {old_us:14.1f} {new_us:12.2f} {old_us / new_us:8.1f}x")


if __name__ == "__main__":
    main()
