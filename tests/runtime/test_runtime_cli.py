"""``infernet generate`` end to end, the tokenizer glue, and the CPU ops vs the kernel references."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from infernet_ref.cli import main
from infernet_ref.runtime import ops
from infernet_ref.runtime.tokenizer import load_tokenizer

from .conftest import hf_greedy


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["generate", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


@pytest.mark.interop
def test_generate_json_whole_and_pipelined(
    checkpoints: dict[str, tuple[Path, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, hf = checkpoints["llama-gqa3"]
    expected = hf_greedy(hf, [[4, 5, 6]], 12)[0]
    code, whole = run_cli(
        capsys,
        "--model",
        str(path),
        "--prompt-ids",
        "4,5,6",
        "--max-new-tokens",
        "12",
        "--json",
        "--threads",
        "1",
    )
    assert code == 0
    assert whole["output_ids"] == expected
    assert whole["kv"][0]["max_concurrent_tokens"] > 0
    assert whole["decode_tokens_per_second"] > 0
    code, piped = run_cli(
        capsys,
        "--model",
        str(path),
        "--prompt-ids",
        "4,5,6",
        "--max-new-tokens",
        "12",
        "--pp-stages",
        "0-0,1-2",
        "--json",
        "--dtype",
        "float32",
        "--threads",
        "1",
    )
    assert code == 0
    assert piped["output_ids"] == expected
    assert piped["stages"] == [[0, 1], [1, 3]]
    assert len(piped["kv"]) == 2


def test_generate_errors_exit_nonzero(
    checkpoints: dict[str, tuple[Path, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(checkpoints["llama-gqa3"][0])
    for argv in (
        ["--prompt-ids", "1,x"],
        ["--prompt-ids", "1", "--tp", "4"],
        ["--prompt-ids", "1", "--pp-stages", "0-0,2-2"],
        ["--prompt", "hello"],
        ["--prompt-ids", "1," * 250],
    ):
        assert main(["generate", "--model", path, "--max-new-tokens", "10", *argv]) == 1
        assert "infernet: error:" in capsys.readouterr().err


def _train_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=90, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(path / "tokenizer.json"))


def test_tokenizer_glue_matches_transformers_fast_tokenizer(
    checkpoints: dict[str, tuple[Path, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import PreTrainedTokenizerFast

    model_dir = tmp_path / "with-tok"
    shutil.copytree(checkpoints["llama-gqa3"][0], model_dir)
    _train_tokenizer(model_dir)
    ours = load_tokenizer(model_dir)
    assert ours is not None
    theirs = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    text = "the lazy fox jumps"
    assert ours.encode(text) == theirs(text)["input_ids"]
    assert ours.encode(text)[0] == 1
    assert ours.decode(ours.encode(text)) == theirs.decode(
        theirs(text)["input_ids"], skip_special_tokens=True
    )
    code, out = run_cli(
        capsys,
        "--model",
        str(model_dir),
        "--prompt",
        text,
        "--max-new-tokens",
        "4",
        "--json",
        "--threads",
        "1",
    )
    assert code == 0
    assert out["prompt_ids"] == ours.encode(text)
    assert isinstance(out["text"], str)


def _kernel_references() -> Any:
    try:
        import infernet_kernels
    except ImportError:
        pytest.skip("infernet_kernels is not importable")
    if not hasattr(infernet_kernels, "rms_norm_reference"):
        pytest.skip("infernet_kernels has no *_reference functions yet")
    return infernet_kernels


def test_cpu_ops_agree_with_kernel_references() -> None:
    k = _kernel_references()
    torch.manual_seed(0)
    x, w = torch.randn(5, 3, 24), torch.randn(24)
    torch.testing.assert_close(ops.rms_norm(x, w, 1e-5), k.rms_norm_reference(x, w, 1e-5))
    g = torch.randn(7, 2 * 33)
    torch.testing.assert_close(ops.silu_and_mul(g), k.silu_and_mul_reference(g))
    q, kk = torch.randn(6, 4, 16), torch.randn(6, 2, 16)
    ang = torch.randn(6, 8)
    ours = ops.rotary_embedding(q, kk, ang.cos(), ang.sin())
    ref = k.rotary_embedding_reference(q.clone(), kk.clone(), ang.cos(), ang.sin())
    torch.testing.assert_close(ours[0], ref[0])
    torch.testing.assert_close(ours[1], ref[1])
    kc, vc = torch.randn(9, 4, 2, 16), torch.randn(9, 4, 2, 16)
    tables = torch.tensor([[3, 1, 7], [0, 8, 2]], dtype=torch.int32)
    lens = torch.tensor([10, 5], dtype=torch.int32)
    qd = torch.randn(2, 4, 16)
    torch.testing.assert_close(
        ops.paged_attention_decode(qd, kc, vc, tables, lens, 0.25),
        k.paged_attention_decode_reference(qd, kc, vc, tables, lens, 0.25),
    )
