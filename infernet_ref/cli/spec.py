"""``infernet spec``: generate and check the typed models, list and validate against schemas."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _generate(args: argparse.Namespace) -> int:
    from infernet_ref.specs import codegen  # noqa: PLC0415

    changed = codegen.generate(Path(args.spec_dir), Path(args.out))
    if changed:
        for name in changed:
            print(f"wrote generated/{codegen.PACKAGE_NAME}/{name}")
    else:
        print("generated/ is up to date")
    return 0


def _check(args: argparse.Namespace) -> int:
    from infernet_ref.specs import codegen  # noqa: PLC0415

    diff = codegen.check(Path(args.spec_dir), Path(args.out))
    if diff:
        sys.stdout.write(diff)
        print(
            "\ngenerated/ differs from what spec/ generates: run `infernet spec generate`",
            file=sys.stderr,
        )
        return 1
    print("generated/ matches spec/")
    return 0


def _list(_args: argparse.Namespace) -> int:
    from infernet_ref.specs import default_registry  # noqa: PLC0415

    reg = default_registry()
    for name in reg.names():
        doc = reg.schema(name)
        print(f"{name:32} {doc.get('title', '')}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from infernet_ref.specs import validate  # noqa: PLC0415

    data: Any = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    model = validate(data, args.schema)
    print(json.dumps({"valid": True, "model": type(model).__name__}))
    return 0


def register(sub: Any) -> None:
    from infernet_ref.specs.codegen import GENERATED_PACKAGE, SPEC_SCHEMAS  # noqa: PLC0415

    parser = sub.add_parser("spec", help="generate and check the typed models; validate messages")
    cmds = parser.add_subparsers(dest="spec_command", metavar="SUBCOMMAND", required=True)
    for name, func, helptext in (
        ("generate", _generate, "regenerate generated/ from spec/schemas"),
        ("check", _check, "exit 1 and print the diff when generated/ is out of date"),
    ):
        p = cmds.add_parser(name, help=helptext)
        p.add_argument("--spec-dir", default=str(SPEC_SCHEMAS))
        p.add_argument("--out", default=str(GENERATED_PACKAGE))
        p.set_defaults(func=func)
    cmds.add_parser("list", help="list the schemas").set_defaults(func=_list)
    p = cmds.add_parser("validate", help="validate a JSON document against a schema")
    p.add_argument("schema", help="schema name, e.g. nostr-event")
    p.add_argument("file", nargs="?", default="-", help="file to read (default stdin)")
    p.set_defaults(func=_validate)
