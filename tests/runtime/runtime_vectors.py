"""Activation-frame vectors (spec/runtime.md §5.1): generated here, checked by the tests.

Run as a script to rewrite spec/vectors/runtime/frames.json.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch

from infernet_ref.runtime.frames import ActivationFrame, encode_frame

OUT = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "runtime" / "frames.json"

VALID: list[tuple[str, ActivationFrame, str | None]] = [
    (
        "prefill_ids_i64",
        ActivationFrame("s-0-1", 0, "input_ids", torch.tensor([1, 15043, 29892])),
        None,
    ),
    (
        "decode_ids_i32",
        ActivationFrame("job_7", 3, "input_ids", torch.tensor([42], dtype=torch.int32)),
        None,
    ),
    (
        "hidden_f32",
        ActivationFrame("s-0-1", 3, "hidden_states", torch.tensor([[0.5, -1.25, 2.0, 0.0]])),
        None,
    ),
    (
        "hidden_bf16_wire",
        ActivationFrame("s-0-1", 0, "hidden_states", torch.tensor([[1.0, -2.0], [0.375, 3.5]])),
        "bfloat16",
    ),
    ("logits_f32", ActivationFrame("s", 7, "logits", torch.tensor([0.0, 1.5, -3.0])), None),
]


def _raw(header: dict[str, Any], data: bytes) -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


META = {"format": "infernet.activation.v1", "session": "s", "position": "0"}
ONE_F32 = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
INVALID: list[tuple[str, bytes]] = [
    ("invalid_empty", b""),
    ("invalid_header_longer_than_blob", struct.pack("<Q", 64) + b"{}"),
    ("invalid_not_json", _raw({}, b"")[:8] + b"{not json"),
    ("invalid_no_metadata", _raw({"logits": ONE_F32}, b"\0" * 4)),
    (
        "invalid_wrong_format",
        _raw({"__metadata__": {**META, "format": "v0"}, "logits": ONE_F32}, b"\0" * 4),
    ),
    (
        "invalid_session_chars",
        _raw({"__metadata__": {**META, "session": "a b"}, "logits": ONE_F32}, b"\0" * 4),
    ),
    (
        "invalid_position_leading_zero",
        _raw({"__metadata__": {**META, "position": "07"}, "logits": ONE_F32}, b"\0" * 4),
    ),
    (
        "invalid_two_tensors",
        _raw(
            {
                "__metadata__": META,
                "logits": ONE_F32,
                "input_ids": {"dtype": "I64", "shape": [1], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
        ),
    ),
    ("invalid_unknown_tensor", _raw({"__metadata__": META, "x": ONE_F32}, b"\0" * 4)),
    (
        "invalid_logits_f16",
        _raw(
            {
                "__metadata__": META,
                "logits": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
            },
            b"\0" * 4,
        ),
    ),
    ("invalid_hidden_1d", _raw({"__metadata__": META, "hidden_states": ONE_F32}, b"\0" * 4)),
    (
        "invalid_offsets_size_mismatch",
        _raw({"__metadata__": META, "logits": {**ONE_F32, "data_offsets": [0, 8]}}, b"\0" * 8),
    ),
    (
        "invalid_truncated_data",
        _raw(
            {"__metadata__": META, "logits": {**ONE_F32, "shape": [2], "data_offsets": [0, 8]}},
            b"\0" * 4,
        ),
    ),
    ("invalid_trailing_bytes", _raw({"__metadata__": META, "logits": ONE_F32}, b"\0" * 5)),
    (
        "invalid_empty_ids",
        _raw(
            {
                "__metadata__": META,
                "input_ids": {"dtype": "I64", "shape": [0], "data_offsets": [0, 0]},
            },
            b"",
        ),
    ),
]


def build() -> dict[str, Any]:
    valid = []
    for name, frame, wire in VALID:
        dtype = getattr(torch, wire) if wire else None
        t = (
            frame.tensor.to(dtype)
            if dtype is not None and frame.kind == "hidden_states"
            else frame.tensor
        )
        valid.append(
            {
                "name": name,
                "hex": encode_frame(frame, dtype).hex(),
                "session": frame.session,
                "position": frame.position,
                "kind": frame.kind,
                "dtype": str(t.dtype).removeprefix("torch."),
                "shape": list(t.shape),
                "values": t.float().reshape(-1).tolist(),
            }
        )
    invalid = [{"name": n, "hex": b.hex(), "error": "FrameError", "code": 4000} for n, b in INVALID]
    return {"valid": valid, "invalid": invalid}


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")
