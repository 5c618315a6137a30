"""Serialization stress contents shared by the vector writer and the nostr-tools interop tests."""

from __future__ import annotations

C0 = "".join(chr(c) for c in range(0x20))

STRESS: dict[str, str] = {
    "empty": "",
    "ascii": "hello world",
    "emoji": "😀🎉👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈",
    "cjk": "分布式推理 ネットワーク 인공지능",
    "combining": "e\u0301 a\u0308 n\u0303 Z\u0351\u0352\u0353 \u0915\u094d\u0937",
    "quotes_backslashes": 'say "hi" \\ back\\slash \\" \\\\n \'single\'',
    "c0_controls": C0,
    "del_and_c1": "\x7f\x80\x9f\u00a0",
    "line_separators": "a\u2028b\u2029c",
    "json_like": '{"a":[1,2,{"b":null}]}',
    "bmp_edges": "\ufeff\ufffd\uffff\U00010000\U0010ffff",
    "long_100k": "x" * 50_000 + "é" * 20_000 + "😀" * 2_500,
}

STRESS_TAGS: list[list[str]] = [["t", s] for s in STRESS.values() if len(s) < 1000] + [
    ["e", "ab" * 32, "wss://relay.example", "root"],
    ["p", "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d"],
    *[["n", str(i)] for i in range(300)],
]
