"""``infernet conformance``: list the cases and run them against a node by address."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def _list(args: argparse.Namespace) -> int:
    from infernet_conformance import all_cases, load_cases  # noqa: PLC0415
    from infernet_conformance.runner import select  # noqa: PLC0415

    load_cases()
    for c in select(all_cases(), args.only):
        print(f"{c.id:44} {c.section:28} {c.description}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from infernet_conformance import Target, all_cases, load_cases, run_cases  # noqa: PLC0415
    from infernet_conformance.report import to_markdown, write_reports  # noqa: PLC0415
    from infernet_conformance.runner import select  # noqa: PLC0415
    from infernet_conformance.target import TargetError  # noqa: PLC0415

    load_cases()
    try:
        target = Target.parse(args.target)
    except TargetError as exc:
        print(f"infernet conformance: {exc}", file=sys.stderr)
        return 2
    cases = select(all_cases(), args.only)
    if not cases:
        print("infernet conformance: no case matches --only", file=sys.stderr)
        return 2
    report = asyncio.run(run_cases(cases, target, timeout=args.timeout))
    for path in write_reports(report, Path(args.report_dir)):
        print(f"wrote {path}", file=sys.stderr)
    sys.stdout.write(to_markdown(report))
    return 0 if report.ok else 1


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "conformance", help="run the black-box conformance suite against a node"
    )
    cmds = parser.add_subparsers(dest="conformance_command", metavar="SUBCOMMAND", required=True)
    p = cmds.add_parser("list", help="list the cases")
    p.add_argument(
        "--only", action="append", metavar="PATTERN", help="glob or id prefix (repeatable)"
    )
    p.set_defaults(func=_list)
    p = cmds.add_parser("run", help="run cases against --target and write reports")
    p.add_argument(
        "--target",
        action="append",
        required=True,
        metavar="URL",
        help="ws://HOST:PORT, udp://HOST:PORT, http://HOST:PORT or NAME=URL (repeatable)",
    )
    p.add_argument("--report-dir", default="reports/conformance", metavar="DIR")
    p.add_argument(
        "--only", action="append", metavar="PATTERN", help="glob or id prefix (repeatable)"
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per case (default 10)")
    p.set_defaults(func=_run)
