"""Pipeline stages: 2 and 3 stages in one process and across processes, frames, bad input."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infernet_ref.runtime.errors import (
    FrameError,
    OutOfKVBlocks,
    PromptTooLong,
    RuntimeLayerError,
    SessionExists,
    SessionOutOfOrder,
    UnknownSession,
)
from infernet_ref.runtime.frames import ActivationFrame, decode_frame, encode_frame
from infernet_ref.runtime.pipeline import (
    PipelineStage,
    generate_pipeline,
    remote_stage,
    serve_stage,
)
from infernet_ref.runtime.sampling import SamplingParams

from .conftest import hf_greedy

PROMPT = [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def gqa(checkpoints: dict[str, tuple[Path, Any]]) -> tuple[Path, list[int]]:
    path, hf = checkpoints["llama-gqa3"]
    return path, hf_greedy(hf, [PROMPT], 32)[0]


@pytest.mark.interop
@pytest.mark.parametrize("ranges", [[(0, 1), (1, 3)], [(0, 1), (1, 2), (2, 3)]])
def test_in_process_pipeline_matches_transformers(
    ranges: list[tuple[int, int]], gqa: tuple[Path, list[int]]
) -> None:
    path, expected = gqa
    stages = [PipelineStage.load(path, r, num_blocks=16, block_size=4) for r in ranges]
    assert [s.is_first for s in stages] == [True] + [False] * (len(ranges) - 1)
    res = generate_pipeline([s.forward for s in stages], PROMPT, SamplingParams(max_tokens=32))
    assert res.output == expected
    for s in stages:  # the stage holds the session until it is closed
        assert s.sessions == ["s0"]
        s.close_session("s0")
        assert s.blocks.num_free_blocks == 16


@pytest.mark.interop
def test_tied_qwen2_three_stage_pipeline(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    """Tied embeddings: the last stage must read embed_tokens.weight without holding layer 0."""
    path, hf = checkpoints["qwen2-bias"]
    stages = [
        PipelineStage.load(path, r, num_blocks=16, block_size=4) for r in ((0, 1), (1, 2), (2, 3))
    ]
    assert stages[2].model.model.embed_tokens is None
    assert stages[2].model.lm_head is not None
    res = generate_pipeline([s.forward for s in stages], PROMPT, SamplingParams(max_tokens=32))
    assert res.output == hf_greedy(hf, [PROMPT], 32)[0]


@pytest.mark.interop
def test_pipeline_across_processes(gqa: tuple[Path, list[int]]) -> None:
    """Stages 0 and 1 in two child processes, stage 2 here: three stages, three processes."""
    path, expected = gqa
    ctx = mp.get_context("spawn")
    conns, procs = [], []
    for r in ((0, 1), (1, 2)):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=serve_stage, args=(child, str(path), r, None, 16))
        proc.start()
        conns.append(parent)
        procs.append(proc)
    try:
        for c in conns:
            assert c.poll(120), "stage process did not start"
            assert c.recv_bytes() == b"OK"
        local = PipelineStage.load(path, (2, 3), num_blocks=16, block_size=4)
        chain = [remote_stage(c) for c in conns] + [local.forward]
        res = generate_pipeline(chain, PROMPT, SamplingParams(max_tokens=32), session="remote")
        assert res.output == expected
        # a frame out of order is refused remotely with a typed error message
        bad = encode_frame(ActivationFrame("remote", 3, "input_ids", torch.tensor([1])))
        with pytest.raises(RuntimeLayerError, match="SessionOutOfOrder"):
            remote_stage(conns[0])(bad)
    finally:
        for c in conns:
            c.send_bytes(b"")
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()


def test_half_precision_wire_is_smaller_and_close(gqa: tuple[Path, list[int]]) -> None:
    path, _ = gqa
    full = [PipelineStage.load(path, r, num_blocks=8, block_size=4) for r in ((0, 1), (1, 3))]
    half = [
        PipelineStage.load(path, r, num_blocks=8, block_size=4, wire_dtype=torch.bfloat16)
        for r in ((0, 1), (1, 3))
    ]
    frame = encode_frame(ActivationFrame("x", 0, "input_ids", torch.tensor(PROMPT)))
    h32, h16 = full[0].forward(frame), half[0].forward(frame)
    assert len(h16) < 0.6 * len(h32)
    assert decode_frame(h16).tensor.dtype == torch.bfloat16
    l32 = decode_frame(full[1].forward(h32)).tensor
    l16 = decode_frame(half[1].forward(h16)).tensor
    assert (l32 - l16).abs().max() < 0.05 * l32.abs().max()


def test_stage_refuses_bad_frames_without_touching_state(gqa: tuple[Path, list[int]]) -> None:
    path, _ = gqa
    first = PipelineStage.load(path, (0, 1), num_blocks=4, block_size=4, max_sessions=2)
    second = PipelineStage.load(path, (1, 3), num_blocks=4, block_size=4)
    ids = lambda s, p, t: encode_frame(ActivationFrame(s, p, "input_ids", torch.tensor(t)))  # noqa: E731
    hidden = first.forward(ids("a", 0, [1, 2]))
    with pytest.raises(FrameError, match="takes 'input_ids'"):
        first.forward(hidden)
    with pytest.raises(FrameError, match="takes 'hidden_states'"):
        second.forward(ids("a", 0, [1]))
    with pytest.raises(SessionOutOfOrder, match="holds 2 tokens"):
        first.forward(ids("a", 5, [1]))
    with pytest.raises(UnknownSession):
        first.forward(ids("zz", 3, [1]))
    with pytest.raises(FrameError, match="envelope"):
        first.forward(ids("a", 2, [1]), session="a", position=3)
    with pytest.raises(FrameError, match="envelope"):
        first.forward(ids("a", 2, [1]), session="b", position=2)
    with pytest.raises(FrameError, match="must be in"):
        first.forward(ids("b", 0, [1, 10_000]))
    nan = torch.full((1, 48), float("nan"))
    with pytest.raises(FrameError, match="NaN"):
        second.forward(encode_frame(ActivationFrame("a", 0, "hidden_states", nan)))
    with pytest.raises(FrameError, match="width"):
        second.forward(encode_frame(ActivationFrame("a", 0, "hidden_states", torch.zeros(1, 5))))
    with pytest.raises(PromptTooLong):
        first.forward(ids("c", 0, [1] * 300))
    with pytest.raises(OutOfKVBlocks):
        first.forward(ids("c", 0, [1] * 15))  # 4 blocks of 4, one in use
    first.forward(ids("c", 0, [1]))
    with pytest.raises(OutOfKVBlocks, match="maximum of 2 sessions"):
        first.forward(ids("d", 0, [1]))
    assert first.blocks.length("a") == 2
    assert first.blocks.length("c") == 1


def test_nan_weights_raise_numerical_error(gqa: tuple[Path, list[int]]) -> None:
    from infernet_ref.runtime.errors import NumericalError

    path, _ = gqa
    stage = PipelineStage.load(path, (0, 3), num_blocks=4, block_size=4)
    with torch.no_grad():
        stage.model.model.layers["1"].mlp.down_proj.weight[0, 0] = float("nan")
    with pytest.raises(NumericalError):
        stage.forward(encode_frame(ActivationFrame("n", 0, "input_ids", torch.tensor([1, 2]))))
    assert "n" not in stage.blocks  # the spoiled session is dropped


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_decode_frame_fuzz_only_frame_errors(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_frame(data)


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(["input_ids", "hidden_states", "logits"]),
    n=st.integers(1, 5),
    session=st.text(alphabet="abcXYZ019_-", min_size=1, max_size=64),
    position=st.integers(0, 10**6),
    cut=st.integers(0, 400),
)
def test_frame_round_trip_and_truncation(
    kind: str, n: int, session: str, position: int, cut: int
) -> None:
    tensor = {
        "input_ids": torch.arange(n),
        "hidden_states": torch.randn(n, 3),
        "logits": torch.randn(n),
    }[kind]
    data = encode_frame(ActivationFrame(session, position, kind, tensor))
    back = decode_frame(data)
    assert (back.session, back.position, back.kind) == (session, position, kind)
    assert torch.equal(back.tensor, tensor)
    if cut < len(data):
        with pytest.raises(FrameError):
            decode_frame(data[:cut])


def test_frames_interoperate_with_the_safetensors_library() -> None:
    from safetensors.torch import load, save

    t = torch.randn(3, 8, dtype=torch.bfloat16)
    ours = encode_frame(ActivationFrame("s", 7, "hidden_states", t))
    assert torch.equal(load(ours)["hidden_states"], t)
    theirs = save(
        {"hidden_states": t},
        metadata={"format": "infernet.activation.v1", "session": "s", "position": "7"},
    )
    back = decode_frame(theirs)
    assert torch.equal(back.tensor, t)
    assert back.position == 7
    with pytest.raises(FrameError, match="not allowed"):
        decode_frame(
            save(
                {"a": t, "b": t.clone()},
                metadata={"format": "infernet.activation.v1", "session": "s", "position": "0"},
            )
        )
    with pytest.raises(FrameError, match="metadata"):
        decode_frame(save({"logits": torch.zeros(2)}))


def test_explicit_sessions_reserve_blocks(gqa: tuple[Path, list[int]]) -> None:
    """stage.open semantics (spec/job.md): reserve for max_tokens, refuse beyond it."""
    path, expected = gqa
    stages = [
        PipelineStage.load(path, r, num_blocks=12, block_size=4, require_open=True)
        for r in ((0, 2), (2, 3))
    ]
    frame = encode_frame(ActivationFrame("j-1", 0, "input_ids", torch.tensor(PROMPT)))
    with pytest.raises(UnknownSession):
        stages[0].forward(frame)
    assert [s.open_session("j-1", 5 + 8) for s in stages] == [4, 4]
    assert stages[0].blocks.num_free_blocks == 8
    with pytest.raises(SessionExists):
        stages[0].open_session("j-1", 4)
    with pytest.raises(OutOfKVBlocks):
        stages[0].open_session("j-2", 40)
    with pytest.raises(PromptTooLong):
        stages[0].open_session("j-3", 10_000)
    res = generate_pipeline(
        [s.forward for s in stages], PROMPT, SamplingParams(max_tokens=8), session="j-1"
    )
    assert res.output == expected[:8]
    assert stages[0].blocks.num_free_blocks == 8  # growth stayed inside the reservation
    with pytest.raises(PromptTooLong, match="limit is 13"):
        stages[0].forward(
            encode_frame(ActivationFrame("j-1", 12, "input_ids", torch.tensor([1, 2])))
        )
    for s in stages:
        s.close_session("j-1")
        assert s.blocks.num_free_blocks == 12
        assert s.sessions == []


def test_frame_headers_follow_the_schema() -> None:
    import json
    import struct

    from infernet_ref.specs import validate_data

    for kind, t in (
        ("input_ids", torch.arange(3)),
        ("hidden_states", torch.zeros(2, 4, dtype=torch.float16)),
        ("logits", torch.zeros(9)),
    ):
        data = encode_frame(ActivationFrame("s-0-1", 4, kind, t))
        (n,) = struct.unpack_from("<Q", data)
        validate_data(json.loads(data[8 : 8 + n]), "runtime-activation-frame")
    bad = encode_frame(ActivationFrame("s", 0, "logits", torch.zeros(2))).replace(
        b'"position":"0"', b'"position":"x"'
    )
    with pytest.raises(FrameError, match="position"):
        decode_frame(bad)


def test_driver_replay_after_reroute_gives_the_same_tokens(gqa: tuple[Path, list[int]]) -> None:
    """spec/job.md failure and replay: fresh sessions, prompt + tokens so far, same output."""
    from infernet_ref.runtime.pipeline import PipelineDriver

    path, _ = gqa
    params = SamplingParams(max_tokens=12, temperature=0.8, top_k=40, seed=5)
    stages = [PipelineStage.load(path, r, num_blocks=16, block_size=4) for r in ((0, 2), (2, 3))]
    whole = generate_pipeline([s.forward for s in stages], PROMPT, params, session="a").output
    driver = PipelineDriver(PROMPT, params, session="b")
    for _ in range(5):
        data = driver.next_frame()
        for s in stages:
            data = s.forward(data)
        driver.receive_logits(data)
    fresh = [PipelineStage.load(path, r, num_blocks=16, block_size=4) for r in ((0, 1), (1, 3))]
    driver.restart()  # the "provider" of stage 1 vanished: new stages, new split
    while not driver.done:
        data = driver.next_frame()
        for s in fresh:
            data = s.forward(data)
        driver.receive_logits(data)
    assert driver.output == whole
    assert driver.finish_reason == "length"
    with pytest.raises(FrameError, match="expected logits"):
        driver.receive_logits(encode_frame(ActivationFrame("zz", 0, "logits", torch.zeros(97))))


def test_forward_many_batches_sessions_like_single_frames(gqa: tuple[Path, list[int]]) -> None:
    path, _ = gqa
    batched = PipelineStage.load(path, (0, 3), num_blocks=24, block_size=4)
    single = PipelineStage.load(path, (0, 3), num_blocks=24, block_size=4)
    prompts = {"a": [1, 2, 3], "b": [4, 5, 6, 7, 8, 9, 10], "c": [11]}
    for name, ids in prompts.items():
        frame = encode_frame(ActivationFrame(name, 0, "input_ids", torch.tensor(ids)))
        batched.forward(frame)
        single.forward(frame)
    frames = [
        encode_frame(ActivationFrame(n, len(ids), "input_ids", torch.tensor([7])))
        for n, ids in prompts.items()
    ]
    together = [decode_frame(d).tensor for d in batched.forward_many(frames)]
    alone = [decode_frame(single.forward(d)).tensor for d in frames]
    for t, a in zip(together, alone, strict=True):
        torch.testing.assert_close(t, a, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeLayerError, match="same number of tokens"):
        batched.forward_many(
            [
                encode_frame(ActivationFrame("a", 4, "input_ids", torch.tensor([1]))),
                encode_frame(ActivationFrame("b", 8, "input_ids", torch.tensor([1, 2]))),
            ]
        )
    with pytest.raises(RuntimeLayerError, match="one frame per session"):
        batched.forward_many([frames[0], frames[0]])
    assert [batched.blocks.length(n) for n in prompts] == [4, 8, 2]


def test_nan_in_a_batch_closes_only_the_spoiled_session(gqa: tuple[Path, list[int]]) -> None:
    from infernet_ref.runtime.errors import NumericalError

    path, _ = gqa
    stage = PipelineStage.load(path, (1, 3), num_blocks=8, block_size=4)
    ok, also = torch.randn(2, 48), torch.randn(2, 48)
    frames = [
        ActivationFrame("ok", 0, "hidden_states", ok),
        ActivationFrame("bad", 0, "hidden_states", also),
    ]
    real = stage.model.forward

    def spoil_row_1(x: torch.Tensor, batch: Any, caches: Any) -> torch.Tensor:
        out = real(x, batch, caches)
        out[1, 0] = float("nan")  # as if the second sequence overflowed inside the stage
        return out

    stage.model.forward = spoil_row_1  # type: ignore[method-assign]
    with pytest.raises(NumericalError, match="bad"):
        stage.forward_frames(frames)
    assert stage.sessions == ["ok"]
    assert stage.blocks.length("ok") == 0  # rolled back: the same frame can be sent again
    stage.model.forward = real  # type: ignore[method-assign]
    stage.forward_frames(frames[:1])
    assert stage.blocks.length("ok") == 2
