"""Choosing the libsecp256k1 binding: ``secp256k1`` (the name the design gives) versus ``coincurve``.

Checks which binding reproduces the BIP-340 vectors (signing passes aux_rand or not) and times
sign and verify in paired rounds. ``secp256k1`` is not a project dependency; run this in a venv
that has both, e.g.::

    python3.11 -m venv /tmp/venv-secp && /tmp/venv-secp/bin/pip install secp256k1==0.14.0 coincurve==21.0.0
    /tmp/venv-secp/bin/python benchmarks/bench_nostr_bindings.py
"""

from __future__ import annotations

import csv
import os
import statistics
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

VECTORS = (
    Path(__file__).resolve().parents[1]
    / "spec"
    / "vectors"
    / "nostr"
    / "bip340"
    / "test-vectors.csv"
)


def main() -> None:
    try:
        import coincurve
        import secp256k1  # type: ignore[import-not-found]
    except ImportError as exc:
        print(f"skipped: {exc} (see the module docstring for the venv to use)")
        return
    rows = list(csv.DictReader(VECTORS.read_text().splitlines()))
    for r in rows[:4]:
        sk, msg, aux, sig = (
            bytes.fromhex(r[k]) for k in ("secret key", "message", "aux_rand", "signature")
        )
        a = secp256k1.PrivateKey(sk, raw=True).schnorr_sign(
            msg, None, raw=True
        )  # passes aux = NULL
        b = coincurve.PrivateKey(sk).sign_schnorr(msg, aux)
        label = "zero" if aux == bytes(32) else "non-zero"
        print(
            f"row {r['index']} aux_rand {label:8s} secp256k1 reproduces: {a == sig!s:5s}  coincurve: {b == sig}"
        )
    agree = 0
    for r in rows:
        pk, msg, sig = (bytes.fromhex(r[k]) for k in ("public key", "message", "signature"))
        try:
            got = secp256k1.PublicKey(b"\x02" + pk, raw=True).schnorr_verify(
                msg, sig, None, raw=True
            )
        except Exception:  # an invalid key raises
            got = False
        agree += got == (r["verification result"] == "TRUE")
    print(f"secp256k1 verification agrees with {agree} of {len(rows)} rows")

    sk = os.urandom(32)
    msgs = [os.urandom(32) for _ in range(200)]
    k1, k2 = secp256k1.PrivateKey(sk, raw=True), coincurve.PrivateKey(sk)
    pk = k2.public_key_xonly.format()
    s1 = [k1.schnorr_sign(m, None, raw=True) for m in msgs]
    s2 = [k2.sign_schnorr(m, bytes(32)) for m in msgs]
    ops: dict[str, Callable[[int], Any]] = {
        "secp256k1 schnorr_sign (no aux, no check)": lambda i: k1.schnorr_sign(
            msgs[i], None, raw=True
        ),
        "coincurve sign_schnorr (aux, verifies)": lambda i: k2.sign_schnorr(msgs[i], bytes(32)),
        "secp256k1 parse + schnorr_verify": lambda i: secp256k1.PublicKey(
            b"\x02" + pk, raw=True
        ).schnorr_verify(msgs[i], s1[i], None, raw=True),
        "coincurve parse + verify": lambda i: coincurve.PublicKeyXOnly(pk).verify(s2[i], msgs[i]),
    }
    times: dict[str, list[float]] = {k: [] for k in ops}
    for rnd in range(10):
        order = list(ops.items()) if rnd % 2 == 0 else list(ops.items())[::-1]
        for i in range(len(msgs)):
            for name, fn in order:
                t0 = perf_counter()
                fn(i)
                times[name].append(perf_counter() - t0)
    for name, ts in times.items():
        print(f"{name:44s} {1 / statistics.median(ts):8.0f} /s")


if __name__ == "__main__":
    main()
