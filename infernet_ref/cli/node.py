"""``infernet node``: run the daemon, show its effective config, fetch a node's signed info.

``infernet node run [--config node.yaml]`` starts the node (spec/node.md) and serves until
SIGINT/SIGTERM; ``--ready-file`` gets {"endpoint", "pubkey"} once it listens (for scripts).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _config(args: argparse.Namespace) -> Any:
    from infernet_ref.node.config import env_overrides, load_config  # noqa: PLC0415

    overrides: dict[str, Any] = env_overrides()
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if getattr(args, "listen", None):
        overrides.setdefault("listen", {})["ws"] = args.listen
    return load_config(args.config, overrides=overrides)


def _run(args: argparse.Namespace) -> int:
    from infernet_ref.node.daemon import run_node  # noqa: PLC0415

    return run_node(_config(args), ready_file=Path(args.ready_file) if args.ready_file else None)


def _show_config(args: argparse.Namespace) -> int:
    from infernet_ref.node.config import dump_config  # noqa: PLC0415

    print(dump_config(_config(args)))
    return 0


def _info(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from infernet_ref.node.discovery import fetch_node_info  # noqa: PLC0415

    event, content, rtt = asyncio.run(fetch_node_info(args.url))
    out = content if not args.event else event
    print(json.dumps(out, indent=2, sort_keys=True))
    print(f"# verified: signed by {content['pubkey']}, round trip {rtt * 1000:.1f} ms")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("node", help="run a node or inspect one", description=__doc__)
    nsub = p.add_subparsers(dest="node_command", metavar="SUBCOMMAND")
    run = nsub.add_parser("run", help="run the node daemon")
    for q in (run, cfg := nsub.add_parser("config", help="print the effective configuration")):
        q.add_argument(
            "--config", help="YAML or JSON node configuration (default: embedded defaults)"
        )
        q.add_argument("--data-dir", help="override data_dir")
        q.add_argument("--listen", help="override listen.ws (host:port)")
    run.add_argument("--ready-file", help="write {endpoint, pubkey} here once listening")
    run.set_defaults(func=_run)
    cfg.set_defaults(func=_show_config)
    info = nsub.add_parser("info", help="fetch and verify GET /.well-known/infernet of a node")
    info.add_argument("url", help="the node's job endpoint, ws://host:port/job")
    info.add_argument("--event", action="store_true", help="print the whole signed event")
    info.set_defaults(func=_info)
    p.set_defaults(func=lambda _a: (p.print_help(), 2)[1])
