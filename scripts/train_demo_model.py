#!/usr/bin/env python3
"""Train the tiny byte-level Llama model the node demo serves (``models/demo/``).

Theory of operation: the training text is every docstring of the Python standard library of the
interpreter running this script (module, class and function docstrings, found with ``ast``, files
in sorted order, the ``test``/``idlelib``/``lib2to3``/``site-packages`` trees left out). That text
ships with CPython under the PSF License 2.0, so the weights derived from it carry no licensing
surprise. Tokens are raw UTF-8 bytes (ids 0-255) plus a few special ids (256 BOS, 257 EOS,
258 PAD, 259-263 reserved so the vocabulary is a multiple of 8). The model is a
``transformers.LlamaForCausalLM`` (4 layers, hidden 192, 6 query heads over 2 KV heads, SwiGLU
512, untied embeddings): small enough to train on one CPU thread in a few minutes, big enough to
print recognisable English after a prompt, and shaped so the demo can split it into a 2-stage
pipeline with tensor parallelism 2 inside a stage (heads and KV heads divisible by 2).

Usage (the committed ``models/demo`` was made with exactly this, on one CPU thread)::

    .venv/bin/python scripts/train_demo_model.py --out models/demo

The run is seeded; with the same Python version (the docstrings change between releases) and the
same torch build the output is bit-identical.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
import sys
import sysconfig
import time
from pathlib import Path

VOCAB_SIZE = 264
BOS_ID, EOS_ID, PAD_ID = 256, 257, 258
SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "__pycache__"}


def corpus_text(max_bytes: int) -> tuple[bytes, int]:
    """Collect stdlib docstrings (sorted, deterministic); returns (utf-8 text, files used)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    total = 0
    used = 0
    for path in sorted(root.rglob("*.py")):
        if SKIP_DIRS & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        used += 1
        for node in ast.walk(tree):
            if not isinstance(
                node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
            ):
                continue
            doc = ast.get_docstring(node, clean=True)
            if not doc or len(doc) < 40:
                continue
            parts.append(doc.strip())
            total += len(doc) + 2
        if total >= max_bytes:
            break
    return "\n\n".join(parts).encode("utf-8")[:max_bytes], used


def byte_alphabet() -> list[str]:
    """GPT-2's reversible byte -> printable character map (what HF ByteLevel expects)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def write_tokenizer(out: Path) -> None:
    """Write ``tokenizer.json`` (+ config): token id == byte value, specials 256-263."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors  # noqa: PLC0415

    specials = ["<s>", "</s>", "<pad>"] + [f"<reserved_{i}>" for i in range(VOCAB_SIZE - 259)]
    vocab = {ch: i for i, ch in enumerate(byte_alphabet())}
    vocab.update({tok: 256 + i for i, tok in enumerate(specials)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
    )
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "model_max_length": 512,
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def build_model(torch_mod, transformers_mod):  # type: ignore[no-untyped-def]
    config = transformers_mod.LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=192,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        attention_bias=False,
        mlp_bias=False,
    )
    return transformers_mod.LlamaForCausalLM(config)


def validation_loss(model, torch_mod, val, seq: int, windows: int = 32) -> float:  # type: ignore[no-untyped-def]
    """Mean next-byte loss over the first ``windows`` contiguous held-out windows (deterministic)."""
    losses = []
    with torch_mod.no_grad():
        for i in range(min(windows, (len(val) - 1) // (seq - 1))):
            chunk = val[i * (seq - 1) : (i + 1) * (seq - 1)]
            x = torch_mod.cat([torch_mod.tensor([BOS_ID]), chunk]).unsqueeze(0)
            losses.append(model(input_ids=x, labels=x).loss.item())
    return sum(losses) / len(losses)


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def sample(model, torch_mod, prompt: str, n: int) -> str:  # type: ignore[no-untyped-def]
    ids = [BOS_ID, *prompt.encode("utf-8")]
    with torch_mod.no_grad():
        out = model.generate(
            torch_mod.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=PAD_ID
        )
    tail = [t for t in out[0, len(ids) :].tolist() if t < 256]
    return prompt + bytes(tail).decode("utf-8", errors="replace")


def evaluate_saved(args: argparse.Namespace) -> int:
    """Recompute the held-out loss of the model in ``--out`` and record it in its metadata."""
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    text, _ = corpus_text(args.corpus_bytes)
    data = torch.tensor(list(text), dtype=torch.long)
    model = transformers.LlamaForCausalLM.from_pretrained(args.out)
    model.eval()
    val_loss = validation_loss(model, torch, data[int(len(data) * 0.98) :], args.seq)
    print(f"validation loss {val_loss:.3f} nats/byte", flush=True)
    meta_path = args.out / "infernet_demo.json"
    meta = json.loads(meta_path.read_text())
    meta["training"]["validation_loss_nats_per_byte"] = round(val_loss, 4)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/demo"))
    parser.add_argument("--steps", type=int, default=480)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=192)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--corpus-bytes", type=int, default=4_000_000)
    parser.add_argument(
        "--max-cpu-minutes", type=float, default=9.0, help="hard stop on CPU time (safety)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--tokenizer-only", action="store_true", help="just (re)write tokenizer.json"
    )
    parser.add_argument("--eval-only", action="store_true", help="re-measure a saved model")
    args = parser.parse_args(argv)
    if args.tokenizer_only:
        args.out.mkdir(parents=True, exist_ok=True)
        write_tokenizer(args.out)
        return 0
    if args.eval_only:
        return evaluate_saved(args)

    import torch  # noqa: PLC0415 - heavy, only after argument parsing
    import transformers  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    text, files = corpus_text(args.corpus_bytes)
    data = torch.tensor(list(text), dtype=torch.long)
    split = int(len(data) * 0.98)
    train, val = data[:split], data[split:]
    print(f"corpus: {len(text)} bytes of docstrings from {files} stdlib files", flush=True)

    model = build_model(torch, transformers)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
    gen = torch.Generator().manual_seed(args.seed)

    def batch(src: torch.Tensor) -> torch.Tensor:
        starts = torch.randint(0, len(src) - args.seq, (args.batch,), generator=gen)
        rows = [torch.cat([torch.tensor([BOS_ID]), src[s : s + args.seq - 1]]) for s in starts]
        return torch.stack(rows)

    started = time.monotonic()
    cpu_started = time.process_time()
    model.train()
    step = 0
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, warmup=40)
        x = batch(train)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            wall = time.monotonic() - started
            cpu = time.process_time() - cpu_started
            print(
                f"step {step} loss {loss.item():.3f} ({wall:.0f}s wall, {cpu:.0f}s CPU)", flush=True
            )
        if time.process_time() - cpu_started > args.max_cpu_minutes * 60:
            print(f"CPU time budget reached at step {step}", flush=True)
            break

    model.eval()
    val_loss = validation_loss(model, torch, val, args.seq)
    print(f"validation loss {val_loss:.3f} nats/byte", flush=True)
    prompt = "The function returns"
    print("sample:", sample(model, torch, prompt, 120), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    write_tokenizer(args.out)
    config_path = args.out / "config.json"
    config = json.loads(config_path.read_text())
    config.setdefault("rope_theta", 10000.0)  # transformers 4 spelling, for older loaders
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for path in args.out.iterdir():
        path.chmod(0o644)  # sandboxed workers (uid 65534) must be able to read the weights
    meta = {
        "tokenizer": {"type": "bytes", "bos": BOS_ID, "eos": EOS_ID, "pad": PAD_ID},
        "training": {
            "data": "docstrings of the CPython standard library (PSF License 2.0)",
            "python": sys.version.split()[0],
            "corpus_bytes": len(text),
            "corpus_sha256": hashlib.sha256(text).hexdigest(),
            "steps": step + 1,
            "cpu_seconds": round(time.process_time() - cpu_started),
            "batch": args.batch,
            "seq": args.seq,
            "seed": args.seed,
            "torch": torch.__version__,
            "validation_loss_nats_per_byte": round(val_loss, 4),
        },
    }
    (args.out / "infernet_demo.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"saved to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
