"""Canonical JSON and deterministic CBOR against outside oracles.

Oracles: ECMAScript itself (node's JSON.stringify with keys sorted by Array.prototype.sort, which
compares UTF-16 code units — exactly RFC 8785's rule), RFC 8949 Appendix A's encoding examples and
the key order example of RFC 8949 §4.2.1.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import struct
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.encoding import canonical_json, cbor_decode, cbor_encode, json_decode, json_view
from infernet_ref.errors import EncodingError

NODE = shutil.which("node")

JS_CANONICALIZE = r"""
const canon = (v) => {
  if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
  if (v !== null && typeof v === 'object')
    return '{' + Object.keys(v).sort().map(k => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}';
  return JSON.stringify(v);
};
let input = '';
process.stdin.on('data', d => input += d);
process.stdin.on('end', () => {
  const docs = JSON.parse(input);
  process.stdout.write(JSON.stringify(docs.map(canon)));
});
"""


def _node_canonical(values: list[Any]) -> list[str]:
    assert NODE is not None
    proc = subprocess.run(
        [NODE, "-e", JS_CANONICALIZE],
        input=json.dumps(values, ensure_ascii=True).encode(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    return list(json.loads(proc.stdout))


NIP01_ESCAPES = [
    ("\n", "\\n"),
    ('"', '\\"'),
    ("\\", "\\\\"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
    ("\x00", "\\u0000"),
    ("\x01", "\\u0001"),
    ("\x1f", "\\u001f"),
    ("\x7f", "\x7f"),
    ("\u2028", "\u2028"),
    ("\u2029", "\u2029"),
    ("é", "é"),
    ("水", "水"),
    ("😀", "😀"),
    ("/", "/"),
]


@pytest.mark.parametrize(("char", "escaped"), NIP01_ESCAPES)
def test_nip01_string_escaping(char: str, escaped: str) -> None:
    assert canonical_json(char) == f'"{escaped}"'.encode()


def test_every_c0_control_character_is_pinned() -> None:
    named = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
    for code in range(0x20):
        expected = named.get(code, f"\\u{code:04x}")
        assert canonical_json(chr(code)) == f'"{expected}"'.encode()


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(EncodingError, match="surrogate"):
        canonical_json("a\ud800b")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2**53 + 1, {1: "x"}, {"a"}, b"x"])
def test_values_without_canonical_form(bad: Any) -> None:
    with pytest.raises(EncodingError):
        canonical_json(bad)


# RFC 8785 Appendix B: IEEE-754 bit patterns and their canonical number text.
RFC8785_NUMBERS = [
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7FEFFFFFFFFFFFFF, "1.7976931348623157e+308"),
    (0xFFEFFFFFFFFFFFFF, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xC340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44B52D02C7E14AF5, "9.999999999999997e+22"),
    (0x44B52D02C7E14AF6, "1e+23"),
    (0x44B52D02C7E14AF7, "1.0000000000000001e+23"),
    (0x444B1AE4D6E2EF4E, "999999999999999700000"),
    (0x444B1AE4D6E2EF4F, "999999999999999900000"),
    (0x444B1AE4D6E2EF50, "1e+21"),
    (0x3EB0C6F7A0B5ED8C, "9.999999999999997e-7"),
    (0x3EB0C6F7A0B5ED8D, "0.000001"),
    (0x41B3DE4355555553, "333333333.3333332"),
    (0x41B3DE4355555554, "333333333.33333325"),
    (0x41B3DE4355555555, "333333333.3333333"),
    (0x41B3DE4355555556, "333333333.3333334"),
    (0x41B3DE4355555557, "333333333.33333343"),
    (0xBECBF647612F3696, "-0.0000033333333333333333"),
    (0x43143FF3C1CB0959, "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC8785_NUMBERS, ids=[t for _, t in RFC8785_NUMBERS])
def test_rfc8785_number_serialization(bits: int, text: str) -> None:
    value = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    assert canonical_json(value) == text.encode()


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=("Cs",)), max_size=6), children, max_size=4
        )
    ),
    max_leaves=20,
)


@pytest.mark.interop
@pytest.mark.skipif(NODE is None, reason="node (ECMAScript oracle) is not installed")
@settings(max_examples=1)
@given(st.lists(json_values, min_size=200, max_size=200))
def test_canonical_json_matches_ecmascript(values: list[Any]) -> None:
    ours = [canonical_json(v).decode() for v in values]
    assert ours == _node_canonical(values)


@given(json_values)
def test_canonical_json_is_deterministic_and_round_trips(value: Any) -> None:
    first = canonical_json(value)
    assert canonical_json(json_decode(first)) == first
    assert canonical_json(value) == first


def test_object_members_sort_by_utf16_code_units() -> None:
    # U+1F600 is D83D DE00 in UTF-16, so it sorts before U+FF61 although its code point is larger.
    doc = {"\uff61": 2, "\U0001f600": 1, "a": 3}
    assert canonical_json(doc) == '{"a":3,"\U0001f600":1,"\uff61":2}'.encode()


# RFC 8949 Appendix A (preferred serialization) — every example without tags or indefinite lengths.
RFC8949_EXAMPLES: list[tuple[Any, str]] = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"),
    (1000, "1903e8"), (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"), (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (0.0, "f90000"), (-0.0, "f98000"), (1.0, "f93c00"), (1.1, "fb3ff199999999999a"),
    (1.5, "f93e00"), (65504.0, "f97bff"), (100000.0, "fa47c35000"),
    (3.4028234663852886e38, "fa7f7fffff"), (1.0e300, "fb7e37e43c8800759c"),
    (5.960464477539063e-8, "f90001"), (0.00006103515625, "f90400"), (-4.0, "f9c400"),
    (-4.1, "fbc010666666666666"), (math.inf, "f97c00"), (math.nan, "f97e00"), (-math.inf, "f9fc00"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ('"\\', "62225c"), ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"), ("\U00010151", "64f0908591"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "a56161614161626142616361436164614461656145"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "hexed"), RFC8949_EXAMPLES, ids=[h for _, h in RFC8949_EXAMPLES])
def test_rfc8949_appendix_a(value: Any, hexed: str) -> None:
    assert cbor_encode(value).hex() == hexed
    decoded = cbor_decode(bytes.fromhex(hexed))
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(decoded)
    else:
        assert decoded == value


def test_rfc8949_section_4_2_1_key_order() -> None:
    # The order RFC 8949 §4.2.1 gives: 10, 100, -1, "z", "aa", false is not a valid key here.
    encoded = cbor_encode({"aa": 5, "z": 4, -1: 3, 100: 2, 10: 1})
    assert encoded.hex() == "a5" + "0a01" + "186402" + "2003" + "617a04" + "62616105"


def test_non_deterministic_input_is_refused() -> None:
    for hexed in [
        "1800",  # 0 with a one-byte argument
        "a2616201616101",  # keys out of order
        "a2616101616102",  # duplicate key
        "5f42010243030405ff",  # indefinite-length bytes
        "fa3fc00000",  # 1.5 as single where half suffices
        "c11a514b67b0",  # tag 1
        "c249010000000000000000",  # bignum
    ]:
        with pytest.raises(EncodingError):
            cbor_decode(bytes.fromhex(hexed))


def test_size_limit_and_trailing_bytes() -> None:
    with pytest.raises(EncodingError, match="exceeds"):
        cbor_decode(cbor_encode(b"x" * 100), max_size=50)
    with pytest.raises(EncodingError):
        cbor_decode(bytes.fromhex("0000"))
    with pytest.raises(EncodingError):
        cbor_decode(b"")


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats()
    | st.binary(max_size=20)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=4) | st.binary(max_size=4) | st.integers(-1000, 1000),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(cbor_values)
def test_cbor_round_trip_is_exact(value: Any) -> None:
    encoded = cbor_encode(value)
    assert cbor_encode(cbor_decode(encoded)) == encoded


@given(st.binary(max_size=300))
def test_cbor_decoder_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(EncodingError):
        cbor_decode(data)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_json_decoder_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(EncodingError):
        json_decode(data)


def test_json_decoder_limits() -> None:
    with pytest.raises(EncodingError, match="nesting"):
        json_decode(b"[" * 65 + b"]" * 65)
    json_decode(b"[" * 64 + b"]" * 64)
    with pytest.raises(EncodingError, match=r"nesting|malformed"):
        json_decode(b"[" * 100000 + b"]" * 100000, max_size=1 << 20)
    with pytest.raises(EncodingError):
        json_decode(b"NaN")
    with pytest.raises(EncodingError):
        json_decode("1" * 5000)


def test_json_view_of_cbor() -> None:
    assert json_view({"t": b"\x00\xff", "b": [b"\x01"]}) == {"t": "00ff", "b": ["01"]}
