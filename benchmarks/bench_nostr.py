"""Identity layer benchmark: NIP-01 event signing and verification per second.

Compared in the same run against raw libsecp256k1 through coincurve (the same BIP-340 calls on
pre-extracted bytes: what any event verifier must at least do) and against nostr-tools (npm, the
version pinned in tests/nostr/js). The machine this runs on is shared, so the comparison with
coincurve is *paired*: each event is verified by the raw call and by ``verify_event`` back to
back (order alternating), and rates are medians of those per-operation times; a load spike hits
both members of a pair alike. Ratios are medians of the per-pair ratios.

    .venv/bin/python benchmarks/bench_nostr.py [--events 200] [--rounds 20] [--js-n 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

from coincurve import PrivateKey, PublicKeyXOnly

from infernet_ref.nostr import Signer, sign_event, verify_event
from infernet_ref.nostr.event import clear_key_cache

JS = Path(__file__).resolve().parents[1] / "tests" / "nostr" / "js"
Op = Callable[[int], Any]


def make_events(n: int) -> tuple[list[PrivateKey], list[dict[str, Any]]]:
    """``n`` events of kind 8201 by ``n`` distinct keys, with realistic tags and mixed-script content."""
    keys = [PrivateKey(os.urandom(32)) for _ in range(n)]
    events = []
    for i, key in enumerate(keys):
        tags = [["p", os.urandom(32).hex()], ["job", f"j-{i:08d}"], ["verdict", "ok"]]
        content = f"benchmark event {i} " + "é😀 lorem ipsum " * (i % 12)
        events.append(
            sign_event(
                {"kind": 8201, "created_at": 1_700_000_000 + i, "tags": tags, "content": content},
                key,
            )
        )
    return keys, events


def paired(ops: dict[str, Op], n: int, rounds: int) -> dict[str, list[float]]:
    """Per-operation times of each op on items 0..n-1, the ops run back to back per item."""
    times: dict[str, list[float]] = {name: [] for name in ops}
    order = list(ops.items())
    for r in range(rounds):
        seq = order if r % 2 == 0 else order[::-1]
        for i in range(n):
            for name, op in seq:
                t0 = perf_counter()
                op(i)
                times[name].append(perf_counter() - t0)
    return times


def ratio(times: dict[str, list[float]], ours: str, base: str) -> float:
    return statistics.median(b / o for o, b in zip(times[ours], times[base], strict=True))


def nostr_tools(requests: list[dict[str, Any]]) -> list[dict[str, float]] | None:
    if shutil.which("node") is None or not (JS / "node_modules" / "nostr-tools").is_dir():
        return None
    proc = subprocess.run(
        ["node", str(JS / "oracle.mjs")],
        input=json.dumps(requests).encode(),
        capture_output=True,
        timeout=600,
        check=True,
    )
    result: list[dict[str, float]] = json.loads(proc.stdout)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--events", type=int, default=200, help="distinct events (and signing keys)")
    ap.add_argument("--rounds", type=int, default=20, help="passes over the events")
    ap.add_argument("--js-n", type=int, default=1000, help="nostr-tools operations to time")
    args = ap.parse_args()

    keys, events = make_events(args.events)
    raw = [
        (bytes.fromhex(e["pubkey"]), bytes.fromhex(e["sig"]), bytes.fromhex(e["id"]))
        for e in events
    ]
    parsed = [PublicKeyXOnly(pk) for pk, _, _ in raw]
    aux = os.urandom(32)
    templates = [{k: e[k] for k in ("kind", "created_at", "tags", "content")} for e in events]
    signers = [Signer(k.secret) for k in keys]

    verify_ops: dict[str, Op] = {
        "raw coincurve verify (parse key + verify)": lambda i: PublicKeyXOnly(raw[i][0]).verify(
            raw[i][1], raw[i][2]
        ),
        "raw coincurve verify (pre-parsed key)": lambda i: parsed[i].verify(raw[i][1], raw[i][2]),
        "infernet verify_event (shape+id+sig)": lambda i: verify_event(events[i]),
        "infernet verify_event, cold key cache": lambda i: (
            clear_key_cache(),
            verify_event(events[i]),
        ),
    }
    sign_ops: dict[str, Op] = {
        "raw coincurve sign_schnorr": lambda i: keys[i].sign_schnorr(raw[i][2], aux),
        "infernet sign_event (Signer)": lambda i: sign_event(templates[i], signers[i], aux=aux),
    }
    assert all(verify_event(e) for e in events)
    vt = paired(verify_ops, args.events, args.rounds)
    st = paired(sign_ops, args.events, max(2, args.rounds // 2))
    rates = {name: 1 / statistics.median(ts) for name, ts in {**vt, **st}.items()}
    js = nostr_tools(
        [
            {"op": "bench_verify", "events": events[:200], "n": args.js_n},
            {"op": "bench_sign", "sk": keys[0].secret.hex(), "n": args.js_n},
        ]
    )
    if js is not None:
        rates["nostr-tools verifyEvent"] = js[0]["per_s"]
        rates["nostr-tools finalizeEvent"] = js[1]["per_s"]
    for name, rate in rates.items():
        print(f"{name:45s} {rate:10.0f} /s")
    ours_v, ours_s = "infernet verify_event (shape+id+sig)", "infernet sign_event (Signer)"
    cold, raw_pv = (
        "infernet verify_event, cold key cache",
        "raw coincurve verify (parse key + verify)",
    )
    lines = [
        ("verify_event / raw verify (parse+verify)", ratio(vt, ours_v, raw_pv), "  (goal >= 0.9)"),
        (
            "verify_event / raw verify (pre-parsed key)",
            ratio(vt, ours_v, "raw coincurve verify (pre-parsed key)"),
            "",
        ),
        ("cold-cache verify_event / raw (parse+verify)", ratio(vt, cold, raw_pv), ""),
        ("sign_event / raw sign_schnorr", ratio(st, ours_s, "raw coincurve sign_schnorr"), ""),
    ]
    for label, value, note in lines:
        print(f"ratio {label:45s} {value:.3f}{note}")
    if js is not None:
        print(
            f"ratio verify_event / nostr-tools verifyEvent   {rates[ours_v] / rates['nostr-tools verifyEvent']:.1f}x"
        )
        print(
            f"ratio sign_event / nostr-tools finalizeEvent   {rates[ours_s] / rates['nostr-tools finalizeEvent']:.1f}x"
        )
    else:
        print("nostr-tools not installed (scripts/setup.d/20-nostr-tools.sh): skipped")


if __name__ == "__main__":
    main()
