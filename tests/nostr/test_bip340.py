"""BIP-340 Schnorr against the official vectors.

``spec/vectors/nostr/bip340/test-vectors.csv`` is BIP-340 as deployed (bitcoin/bips commit
7e8b5dfc, even-y R): libsecp256k1 through our API signs every row byte for byte (aux_rand
included) and verifies every row as expected. The copy provided in ``../shared/vectors/bip340``
is an early-2020 draft (square-y R, ``BIP340/`` hash tags); it is kept as
``draft-2020-square-y-test-vectors.csv`` and a slow pure-Python model shows that exactly those two
rules separate the files, so the difference is the file's revision, not our code.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from infernet_ref.nostr import KeyFormatError, Signer, public_key, schnorr_sign, schnorr_verify

from . import bip340_model as model
from .conftest import SHARED, VECTORS

FINAL = VECTORS / "bip340" / "test-vectors.csv"
DRAFT = VECTORS / "bip340" / "draft-2020-square-y-test-vectors.csv"


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


ROWS = rows(FINAL)


def unhex(row: dict[str, str], *names: str) -> list[bytes]:
    return [bytes.fromhex(row[n]) for n in names]


def test_shared_copy_is_the_draft_file() -> None:
    original = SHARED / "bip340" / "test-vectors.csv"
    if not original.exists():
        pytest.skip("../shared/vectors not present on this machine; the committed copy is used")
    assert original.read_bytes() == DRAFT.read_bytes()


def test_all_fifteen_rows_present() -> None:
    assert [int(r["index"]) for r in ROWS] == list(range(15))
    assert [int(r["index"]) for r in rows(DRAFT)] == list(range(15))


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"row{r['index']}")
def test_vector(row: dict[str, str]) -> None:
    pk, msg, sig = unhex(row, "public key", "message", "signature")
    expected = row["verification result"] == "TRUE"
    if row["secret key"]:
        sk, aux = unhex(row, "secret key", "aux_rand")
        assert public_key(sk) == pk
        assert schnorr_sign(msg, sk, aux) == sig  # byte for byte, aux_rand included
        signer = Signer(sk)
        assert signer.public_key == pk
        assert signer.sign(msg, aux) == sig
    assert schnorr_verify(msg, pk, sig) is expected


@pytest.mark.parametrize(
    ("path", "rule", "tag"),
    [(FINAL, model.even_y, "BIP0340"), (DRAFT, model.square_y, "BIP340")],
    ids=["final-even-y", "draft-square-y"],
)
def test_model_explains_each_file(path: Path, rule: model.Rule, tag: str) -> None:
    for row in rows(path):
        pk, msg, sig = unhex(row, "public key", "message", "signature")
        if row["secret key"]:
            sk, aux = unhex(row, "secret key", "aux_rand")
            assert model.sign(sk, msg, aux, rule, tag) == sig, row["index"]
        assert model.verify(pk, msg, sig, rule, tag) is (row["verification result"] == "TRUE"), row[
            "index"
        ]


def test_draft_rows_are_not_bip340_final() -> None:
    """Under the deployed rules the draft's valid signatures (rows 0-4) do not verify; its invalid ones stay invalid."""
    for row in rows(DRAFT):
        pk, msg, sig = unhex(row, "public key", "message", "signature")
        assert schnorr_verify(msg, pk, sig) is False
        assert model.verify(pk, msg, sig, model.even_y) is False


def test_fresh_aux_randomises_but_verifies() -> None:
    sk = bytes.fromhex(ROWS[1]["secret key"])
    msg = bytes(32)
    a, b = schnorr_sign(msg, sk), schnorr_sign(msg, sk)
    assert a != b
    assert schnorr_verify(msg, public_key(sk), a)
    assert schnorr_verify(msg, public_key(sk), b)


@pytest.mark.parametrize(
    ("sk", "msg", "aux"),
    [
        (bytes(32), bytes(32), None),  # zero key
        (b"\xff" * 32, bytes(32), None),  # >= n
        (bytes(31) + b"\x01", bytes(31), None),  # short message
        (bytes(31) + b"\x01", bytes(32), bytes(31)),  # short aux
        ("AB" * 32, bytes(32), None),  # upper-case hex
    ],
)
def test_sign_rejects_bad_input(sk: bytes | str, msg: bytes, aux: bytes | None) -> None:
    with pytest.raises(KeyFormatError):
        schnorr_sign(msg, sk, aux)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("msg", "pk", "sig"),
    [
        (bytes(32), bytes(32), bytes(64)),  # pk not on curve
        (bytes(32), b"\x01" * 31, bytes(64)),
        (
            bytes(32),
            bytes.fromhex("DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659"),
            bytes(63),
        ),
        ("x", bytes(32), bytes(64)),
        (bytes(32), None, None),
    ],
)
def test_verify_never_raises(msg: object, pk: object, sig: object) -> None:
    assert schnorr_verify(msg, pk, sig) is False  # type: ignore[arg-type]


def test_signer_rejects_bad_input() -> None:
    with pytest.raises(KeyFormatError):
        Signer(bytes(32))
    signer = Signer(bytes(31) + b"\x01")
    with pytest.raises(KeyFormatError):
        signer.sign(bytes(31))
    with pytest.raises(KeyFormatError):
        signer.sign(bytes(32), bytes(5))
    assert signer.sign(bytes(32)) != signer.sign(bytes(32))  # fresh aux by default
