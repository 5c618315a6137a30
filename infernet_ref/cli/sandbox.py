"""``infernet sandbox``: build the worker image and check the sandbox on this host."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _image(_args: argparse.Namespace) -> int:
    from infernet_ref.node.sandbox import docker  # noqa: PLC0415

    if not docker.daemon_reachable():
        print("sandbox image: no Docker daemon reachable; nothing built")
        return 1
    print(docker.ensure_image())
    return 0


def _check(args: argparse.Namespace) -> int:
    from infernet_ref.node.sandbox.selfcheck import check_backend  # noqa: PLC0415

    report: dict[str, Any] = {}
    failed = False
    for name in args.backend or ["docker", "bubblewrap"]:
        _, result = check_backend(name)
        if isinstance(result, str):
            report[name] = {"available": False, "reason": result}
            continue
        report[name] = {
            "available": True,
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in result],
        }
        failed |= not all(c.passed for c in result)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, entry in report.items():
            if not entry["available"]:
                print(f"{name}: unavailable ({entry['reason']})")
                continue
            for c in entry["checks"]:
                mark = "ok  " if c["passed"] else "FAIL"
                print(
                    f"{name:<11} {mark} {c['name']}" + (f"  [{c['detail']}]" if c["detail"] else "")
                )
    if not any(e["available"] for e in report.values()):
        return 2
    return 1 if failed else 0


def register(sub: Any) -> None:
    """Add ``infernet sandbox image|check``."""
    p = sub.add_parser("sandbox", help="sandboxed execution: worker image, confinement check")
    s = p.add_subparsers(dest="sandbox_cmd", required=True)
    img = s.add_parser("image", help="build the local Docker worker image if missing")
    img.set_defaults(func=_image)
    chk = s.add_parser("check", help="prove files/network/memory/pids confinement per backend")
    chk.add_argument("--backend", action="append", choices=["docker", "bubblewrap"])
    chk.add_argument("--json", action="store_true")
    chk.set_defaults(func=_check)
