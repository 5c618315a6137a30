"""A tiny random Llama checkpoint and helpers to start nodes on loopback."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import torch

torch.set_num_threads(1)

TINY = {
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
}


def make_tiny(path: Path, seed: int = 0) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=97,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        **TINY,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.uniform_(0.8, 1.2) if "norm" in name else p.normal_(
                0.0, 0.08 if p.dim() > 1 else 0.05
            )
    model.save_pretrained(path)
    return model


def hf_greedy(model: Any, prompt: list[int], n: int) -> list[int]:
    with torch.inference_mode():
        ids = torch.tensor([prompt])
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
        )
    return out[0, len(prompt) :].tolist()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, str]:
    from infernet_ref.content import build_path

    path = tmp_path_factory.mktemp("tiny-llama")
    model = make_tiny(path)
    cid = str(build_path(path).cid)
    return path, model, cid


def stage_bytes_for(path: Path, layers: int, *, context: int = 64) -> int:
    """Device memory that holds ``layers`` layers plus embedding/head at fp32 and a context."""
    import json

    from infernet_ref.node.planner import JobNeeds, ModelShape, stage_bytes

    shape = ModelShape.from_hf_config(json.loads((path / "config.json").read_text()))
    return stage_bytes(shape, JobNeeds(context // 2, context // 2), 0, layers, 1) + stage_bytes(
        shape, JobNeeds(context // 2, context // 2), shape.num_layers - 1, shape.num_layers, 1
    )


def node_config(tmp: Path, name: str, **raw: Any) -> Any:
    from infernet_ref.node.config import build_config

    doc = {"data_dir": str(tmp / name), "log": {"level": "debug"}}
    doc.update(raw)
    return build_config(doc)


class LogSink(io.StringIO):
    pass


@pytest.fixture
async def no_nodes() -> AsyncIterator[list[Any]]:
    nodes: list[Any] = []
    yield nodes
    for n in nodes:
        await n.stop()
