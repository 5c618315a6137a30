"""The ``infernet`` command.

Every module in this package that defines ``register(subparsers)`` contributes one top-level
command (``spec``, ``conformance``, ``key``, ``ws``, ...). Handlers are set with
``parser.set_defaults(func=...)``, take the parsed namespace and return the exit status. Modules
import their heavy dependencies (torch, the network stacks) inside the handlers so that
``infernet --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from infernet_ref.errors import InfernetError
from infernet_ref.version import PROTOCOL_VERSION, SPEC_VERSION, __version__

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infernet",
        description="Reference implementation of the Infernet Protocol.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"infernet-ref {__version__} (spec {SPEC_VERSION}, wire v{PROTOCOL_VERSION})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``infernet`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except InfernetError as exc:
        print(f"infernet: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
