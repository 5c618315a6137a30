"""spec/vectors/runtime/frames.json: decode, re-encode, refuse the invalid ones."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load

from infernet_ref.runtime.errors import FrameError
from infernet_ref.runtime.frames import ActivationFrame, decode_frame, encode_frame

from .runtime_vectors import OUT, build

VECTORS = json.loads(OUT.read_text())


def test_vectors_are_current() -> None:
    assert build() == VECTORS


@pytest.mark.parametrize("case", VECTORS["valid"], ids=lambda c: c["name"])
def test_valid_frames(case: dict) -> None:
    data = bytes.fromhex(case["hex"])
    frame = decode_frame(data)
    assert (frame.session, frame.position, frame.kind) == (
        case["session"],
        case["position"],
        case["kind"],
    )
    assert str(frame.tensor.dtype) == f"torch.{case['dtype']}"
    assert list(frame.tensor.shape) == case["shape"]
    assert frame.tensor.float().reshape(-1).tolist() == case["values"]
    assert (
        encode_frame(ActivationFrame(frame.session, frame.position, frame.kind, frame.tensor))
        == data
    )
    assert torch.equal(load(data)[case["kind"]], frame.tensor)  # the reference library agrees


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["name"])
def test_invalid_frames(case: dict) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(bytes.fromhex(case["hex"]))
    assert info.value.code == case["code"] == info.value.job_error_code
