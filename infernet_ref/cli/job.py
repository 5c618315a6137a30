"""``infernet job``: submit a job to an aggregator and follow it; status, list, cancel.

The client key and its job records live in the client data directory (``--data-dir``, default
``~/.infernet-client``): the key is created on first use (0600) and every submitted job is
recorded in its SQLite state with its terminal outcome, which ``infernet job list`` shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

DEFAULT_CLIENT_DIR = "~/.infernet-client"


def _client(args: argparse.Namespace) -> tuple[bytes, Any]:
    from infernet_ref.node.config import build_config, load_or_create_key  # noqa: PLC0415
    from infernet_ref.node.store import Store  # noqa: PLC0415

    cfg = build_config({"data_dir": args.data_dir, "roles": ["client"]})
    sk = load_or_create_key(cfg)
    return sk, Store(cfg.data_dir / "state.sqlite3")


def _prompt_ids(args: argparse.Namespace) -> tuple[list[int], Any]:
    tok = None
    if args.tokenizer:
        from infernet_ref.runtime.tokenizer import load_tokenizer  # noqa: PLC0415

        tok = load_tokenizer(args.tokenizer)
    if args.prompt_ids:
        return [int(x) for x in args.prompt_ids.replace(",", " ").split()], tok
    if tok is not None:
        return tok.encode(args.prompt), tok
    return list(args.prompt.encode("utf-8")), None  # byte-level vocabulary


def _text(ids: list[int], tok: Any, byte_level: bool) -> str | None:
    if tok is not None:
        return str(tok.decode(ids))
    if byte_level:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")
    return None


def _submit(args: argparse.Namespace) -> int:
    from infernet_ref.node.client import submit_job  # noqa: PLC0415

    sk, store = _client(args)
    ids, tok = _prompt_ids(args)
    byte_level = bool(args.prompt) and tok is None

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if not args.follow or args.json:
            return
        if kind == "accepted":
            plan = data["plan"]
            print(
                f"job {data['job']} accepted: {plan['strategy']} plan, {len(plan['replicas'])} replica(s)",
                file=sys.stderr,
            )
            for r, rep in enumerate(plan["replicas"]):
                for st in rep:
                    sh = st["shard"]
                    print(
                        f"  replica {r} stage {sh['stage']}: layers [{sh['layer_start']}, {sh['layer_end']}) tp={sh['tp']} on {st['provider'][:16]} {st['endpoint']}",
                        file=sys.stderr,
                    )
        elif kind == "tokens":
            text = _text(data["ids"], tok, byte_level)
            sys.stdout.write(text if text is not None else " ".join(map(str, data["ids"])) + " ")
            sys.stdout.flush()
        elif kind == "progress" and data.get("note"):
            print(f"[{data['state']}] {data['note']}", file=sys.stderr)
        elif kind == "replay":
            print(
                f"\n[replay] replica {data['replica']}: stage 0 moved to {data['provider'][:16]}; "
                f"re-sealed the prompt and {data['generated']} tokens to it",
                file=sys.stderr,
            )

    out = asyncio.run(
        submit_job(
            args.aggregator,
            sk,
            model=args.model,
            prompt_ids=ids,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            redundancy=args.redundancy,
            allow_providers=args.allow_provider,
            stream=args.follow,
            store=store,
            on_event=on_event,
            timeout=args.timeout,
        )
    )
    store.close()
    result = out.to_dict()
    result["text"] = _text(out.tokens, tok, byte_level)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        if args.follow:
            print()
        elif result["text"] is not None:
            print(result["text"])
        else:
            print(" ".join(map(str, out.tokens)))
        ver = out.verification or {}
        print(
            f"state: {out.state}  tokens: {len(out.tokens)}  sha256: {out.output_sha256}  hash ok: {out.hash_ok}",
            file=sys.stderr,
        )
        print(
            f"providers: {', '.join(p[:16] for p in out.providers)}  reroutes: {out.reroutes} (history re-sealed by us: {out.replays})  verification: {ver.get('verdict')}",
            file=sys.stderr,
        )
        if ver.get("mismatched"):
            print(f"MISMATCH against: {', '.join(ver['mismatched'])}", file=sys.stderr)
        if out.error:
            print(f"error {out.error.get('code')}: {out.error.get('message')}", file=sys.stderr)
    return 0 if out.state == "completed" else 1


def _remote(args: argparse.Namespace, msg_type: str) -> int:
    from infernet_ref.node.client import job_request  # noqa: PLC0415

    sk, store = _client(args)
    store.close()
    reply = asyncio.run(job_request(args.aggregator, sk, msg_type, args.job))
    print(json.dumps(reply, indent=2, sort_keys=True))
    return 0


def _list(args: argparse.Namespace) -> int:
    _, store = _client(args)
    rows = store.list_jobs(role="client", limit=args.limit)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "job": r.job,
                        "state": r.state.value,
                        "model": r.model,
                        "output_sha256": r.output_sha256,
                        "error": r.error,
                        "created": r.created,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
    else:
        for r in rows:
            print(
                f"{r.job}  {r.state.value:<10} {r.model[:24]}  {r.output_sha256 or '-'}  {r.error or ''}"
            )
    store.close()
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("job", help="submit and manage jobs (client role)", description=__doc__)
    jsub = p.add_subparsers(dest="job_command", metavar="SUBCOMMAND")

    def common(q: argparse.ArgumentParser, remote: bool = True) -> None:
        q.add_argument(
            "--data-dir",
            default=DEFAULT_CLIENT_DIR,
            help="client key and state (default %(default)s)",
        )
        if remote:
            q.add_argument(
                "--aggregator", required=True, help="aggregator job endpoint ws://host:port/job"
            )

    s = jsub.add_parser("submit", help="submit a generation job")
    common(s)
    s.add_argument("--model", required=True, help="model CID")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", help="prompt text (tokenized with --tokenizer, else as UTF-8 bytes)")
    g.add_argument("--prompt-ids", help="token ids, comma or space separated")
    s.add_argument("--tokenizer", help="model folder holding tokenizer.json")
    s.add_argument("--max-new-tokens", type=int, default=32)
    s.add_argument("--temperature", type=float, default=0.0)
    s.add_argument("--top-k", type=int, default=0)
    s.add_argument("--top-p", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--redundancy", type=int, default=1)
    s.add_argument(
        "--allow-provider",
        action="append",
        metavar="PUBKEY",
        help="seal the prompt only to these stage-0 provider keys (repeatable); another in the "
        "plan or a replay cancels the job",
    )
    s.add_argument("--follow", action="store_true", help="stream tokens and progress")
    s.add_argument("--json", action="store_true", help="print the outcome as JSON")
    s.add_argument("--timeout", type=float, default=600.0)
    s.set_defaults(func=_submit)
    for name, msg in (("status", "job.status"), ("cancel", "job.cancel")):
        q = jsub.add_parser(name, help=f"{name} a job at its aggregator")
        common(q)
        q.add_argument("job")
        q.set_defaults(func=lambda a, m=msg: _remote(a, m))
    ls = jsub.add_parser("list", help="jobs this client submitted")
    common(ls, remote=False)
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    p.set_defaults(func=lambda _a: (p.print_help(), 2)[1])
