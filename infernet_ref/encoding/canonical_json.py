"""Canonical JSON (spec/encoding.md §JSON).

Canonical JSON is RFC 8785 (JCS): no insignificant whitespace, object members sorted by the UTF-16
code units of their names, numbers in ECMAScript shortest form, and strings escaped exactly as
NIP-01 requires (``\\n \\" \\\\ \\r \\t \\b \\f``, other C0 controls as ``\\u00XX`` lower-case,
everything else — including U+2028/U+2029 and non-ASCII — verbatim UTF-8). A lone surrogate has
no UTF-8 form and is refused. The NIP-01 event serialization is the canonical JSON of the array
``[0, pubkey, created_at, kind, tags, content]``.

Decoding is strict: a size cap, a nesting cap, no duplicate member names, no ``NaN``/``Infinity``
literals, valid UTF-8 only. Every failure is an :class:`~infernet_ref.errors.EncodingError`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from infernet_ref.errors import EncodingError

#: Default cap on a JSON document's size in bytes (1 MiB).
MAX_JSON_SIZE = 1 << 20
#: Default cap on nesting depth (arrays and objects).
MAX_JSON_DEPTH = 64
#: Largest integer magnitude that survives a round trip through an IEEE-754 double (JS Number).
MAX_SAFE_INTEGER = (1 << 53) - 1

_encode_string: Any = json.encoder.encode_basestring


def nip01_string(s: str) -> str:
    """Return ``s`` as a JSON string literal with NIP-01 escaping (NIP-01 §Events and signatures)."""
    return str(_encode_string(s))


def _format_number(x: float) -> str:
    """ECMAScript Number::toString (ECMA-262 §6.1.6.1.20), as RFC 8785 §3.2.2.3 requires."""
    if not math.isfinite(x):
        raise EncodingError(f"non-finite number {x!r} has no JSON form")
    if x == 0:
        return "0"
    if x < 0:
        return "-" + _format_number(-x)
    # repr gives the shortest round-tripping digits; re-lay them out per ECMAScript.
    mantissa, _, exp_part = repr(x).partition("e")
    exponent = int(exp_part) if exp_part else 0
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    point = len(int_part.lstrip("0")) + exponent if int_part.strip("0") else exponent
    if not int_part.strip("0"):
        # 0.000123 -> leading zeros of the fraction move the point left
        stripped = frac_part.lstrip("0")
        point = exponent - (len(frac_part) - len(stripped))
        digits = stripped
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{head}e{sign}{abs(e)}"


def _emit(value: Any, out: list[str], depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise EncodingError(f"nesting deeper than {MAX_JSON_DEPTH}")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif isinstance(value, int):
        if abs(value) <= MAX_SAFE_INTEGER:
            out.append(str(value))
        elif abs(value) < 2**1024 and float(value) == value:
            out.append(_format_number(float(value)))  # RFC 8785: every JSON number is a double
        else:
            raise EncodingError(
                f"integer {value} is not exactly representable as an IEEE-754 double"
            )
    elif isinstance(value, float):
        out.append(_format_number(value))
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise EncodingError(f"object member name {key!r} is not a string")
        out.append("{")
        for i, key in enumerate(
            sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        ):
            if i:
                out.append(",")
            out.append(_encode_string(key))
            out.append(":")
            _emit(value[key], out, depth + 1)
        out.append("}")
    else:
        raise EncodingError(f"{type(value).__name__} has no canonical JSON form")


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes (spec/encoding.md §JSON; RFC 8785 + NIP-01 escaping)."""
    out: list[str] = []
    _emit(value, out, 0)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodingError(
            f"string holds a lone surrogate at {exc.start}; it has no UTF-8 form"
        ) from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, val in pairs:
        if key in obj:
            raise EncodingError(f"duplicate object member {key!r}")
        obj[key] = val
    return obj


def _parse_int(text: str) -> int | float:
    """Integers beyond ±(2^53-1) are doubles, as in ECMAScript's JSON.parse (RFC 8785 §3.2.2.3)."""
    if len(text) <= 20:
        exact = int(text)
        if abs(exact) <= MAX_SAFE_INTEGER:
            return exact
    value = float(text)
    if not math.isfinite(value):
        raise EncodingError(f"number {text[:20]}... overflows a double")
    return int(value) if abs(value) <= MAX_SAFE_INTEGER else value


def _reject_constant(name: str) -> Any:
    raise EncodingError(f"{name} is not JSON")


def _depth(value: Any, limit: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            if level > limit:
                raise EncodingError(f"nesting deeper than {limit}")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)


def json_decode(
    data: bytes | bytearray | memoryview | str,
    *,
    max_size: int = MAX_JSON_SIZE,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Parse one JSON document strictly (spec/encoding.md §Decoding); raise EncodingError on anything else."""
    if len(data) > max_size:
        raise EncodingError(f"document of {len(data)} bytes exceeds the {max_size}-byte limit")
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EncodingError(f"invalid UTF-8 at byte {exc.start}: {exc.reason}") from exc
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
        )
    except EncodingError:
        raise
    except json.JSONDecodeError as exc:
        raise EncodingError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except (RecursionError, ValueError) as exc:
        raise EncodingError(f"malformed JSON: {exc}") from exc
    _depth(value, max_depth)
    return value
