"""``infernet demo``: a local swarm on loopback runs one pipelined, verified, fault-injected job.

Starts a bootstrap node, five providers, an aggregator (each its own ``infernet node run``
process, key and data directory) and acts as the client; publishes the demo model through the
content layer; runs a job planned as a 2-stage pipeline with TP=2 in one stage on two redundant
replicas; kills a provider mid-generation and shows the recovery; checks the output against
transformers; stops everything it started (also on Ctrl-C). Exit status 0 only if every check
passed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from infernet_ref.node.demo import DemoOptions, format_report, run_demo  # noqa: PLC0415

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    opts = DemoOptions(
        prompt=args.prompt,
        max_new_tokens=args.max_new_tokens,
        redundancy=args.redundancy,
        kill=not args.no_kill,
        kill_after_tokens=args.kill_after,
        backend=args.backend,
        keep=args.keep,
        workdir=Path(args.workdir) if args.workdir else None,
        on_step=None if args.quiet else say,
    )
    if args.model:
        opts.model_dir = Path(args.model)

    async def main() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_demo(opts)

    try:
        report = asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("demo interrupted; every process it started was stopped")
        return 130
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_report(report))
    return 0 if report.get("ok") else 1


def register(sub: Any) -> None:
    """Add ``infernet demo``."""
    p = sub.add_parser("demo", help="run the local swarm demo", description=__doc__)
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--prompt", default="The function returns")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--redundancy", type=int, default=2)
    p.add_argument("--kill-after", type=int, default=8, help="tokens before the fault")
    p.add_argument("--no-kill", action="store_true", help="do not inject the provider failure")
    p.add_argument("--backend", default="auto", choices=["auto", "docker", "bubblewrap"])
    p.add_argument("--model", help="model folder (default: models/demo)")
    p.add_argument("--workdir", help="keep every node's data here (default: a temp dir, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--quiet", action="store_true", help="no step-by-step output")
    p.set_defaults(func=_run)
