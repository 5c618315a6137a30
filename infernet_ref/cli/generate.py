"""``infernet generate``: run the inference runtime on a local checkpoint (spec/runtime.md §9)."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from dataclasses import replace


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "generate", help="generate tokens from a Hugging Face Llama-family checkpoint"
    )
    p.add_argument("--model", required=True, help="folder with config.json and *.safetensors")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text (needs tokenizer.json in the model folder)")
    src.add_argument("--prompt-ids", help="comma-separated prompt token ids, e.g. 1,2,3")
    p.add_argument("--max-new-tokens", type=int, required=True)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks (gloo, local)")
    p.add_argument("--pp-stages", default=None, help="inclusive layer ranges, e.g. 0-3,4-7")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415

    from infernet_ref.runtime.config import load_config  # noqa: PLC0415
    from infernet_ref.runtime.errors import RequestError  # noqa: PLC0415
    from infernet_ref.runtime.generate import (  # noqa: PLC0415
        GenerateJob,
        parse_stages,
        run_generate,
        tp_rank_generate,
    )
    from infernet_ref.runtime.launch import run_ranks  # noqa: PLC0415
    from infernet_ref.runtime.sampling import SamplingParams  # noqa: PLC0415
    from infernet_ref.runtime.tokenizer import load_tokenizer  # noqa: PLC0415

    cfg = load_config(args.model)
    tok = load_tokenizer(args.model)
    if args.prompt is not None:
        if tok is None:
            raise RequestError(
                "--prompt needs tokenizer.json in the model folder; use --prompt-ids"
            )
        ids = tok.encode(args.prompt)
    else:
        try:
            ids = [int(x) for x in args.prompt_ids.split(",") if x.strip()]
        except ValueError:
            raise RequestError(f"--prompt-ids {args.prompt_ids!r} must be integers") from None
    seed = args.seed
    if seed is None and args.temperature > 0:
        seed = secrets.randbits(63)  # every TP rank must draw the same tokens
    params = SamplingParams(
        max_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=seed,
    )
    from infernet_ref.runtime import tp as tp_mod  # noqa: PLC0415

    tp_mod.local_config(cfg, args.tp)  # impossible sizes fail before anything is spawned
    stages = parse_stages(args.pp_stages, cfg.num_hidden_layers) if args.pp_stages else ()
    job = GenerateJob(args.model, ids, params, args.dtype, stages)
    threads = args.threads or max(1, torch.get_num_threads() // args.tp)
    if args.tp > 1:
        report = run_ranks(tp_rank_generate, args.tp, job, threads, threads=threads)
    else:
        torch.set_num_threads(threads)
        report = run_generate(replace(job))
        report["tp"] = 1
    if tok is not None:
        report["text"] = tok.decode(report["output_ids"])
    if args.json:
        json.dump(report, sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(report.get("text", report["output_ids"]))
        print(
            f"prefill {report['prefill_tokens_per_second']:.1f} tok/s, "
            f"decode {report['decode_tokens_per_second']:.1f} tok/s, "
            f"KV max concurrent tokens {report['kv'][0]['max_concurrent_tokens']}",
            file=sys.stderr,
        )
    return 0
