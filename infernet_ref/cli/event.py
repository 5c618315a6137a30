"""``infernet event sign|verify``: NIP-01 events as JSON on stdin/stdout (spec/nostr.md §Events)."""

from __future__ import annotations

import argparse
import json

from infernet_ref.errors import LocalProtocolError
from infernet_ref.nostr.cli_support import add_key_argument, load_key, read_stdin_text


def _sign(args: argparse.Namespace) -> int:
    from infernet_ref.encoding import json_decode  # noqa: PLC0415
    from infernet_ref.nostr import sign_event  # noqa: PLC0415

    template = json_decode(read_stdin_text(), max_size=1 << 22)
    if not isinstance(template, dict):
        raise LocalProtocolError(
            "stdin must hold one JSON object: {kind, tags, content, created_at?}"
        )
    event = sign_event(template, load_key(args))
    print(json.dumps(event, ensure_ascii=False))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from infernet_ref.encoding import json_decode  # noqa: PLC0415
    from infernet_ref.nostr import EventError, check_event, check_kind_rules  # noqa: PLC0415

    try:
        event = json_decode(read_stdin_text(), max_size=1 << 22)
        check_event(event)
        if not args.nip01_only:
            check_kind_rules(event)
    except EventError as exc:
        print(json.dumps({"valid": False, "reason": exc.reason, "path": exc.path}))
        return 1
    print(
        json.dumps(
            {"valid": True, "id": event["id"], "pubkey": event["pubkey"], "kind": event["kind"]}
        )
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("event", help="sign and verify NIP-01 events (JSON on stdin)")
    cmds = parser.add_subparsers(dest="event_command", metavar="ACTION", required=True)
    sign = cmds.add_parser("sign", help="sign the template on stdin; print the event")
    add_key_argument(sign)
    sign.set_defaults(func=_sign)
    verify = cmds.add_parser("verify", help="verify the event on stdin; exit 1 if invalid")
    verify.add_argument(
        "--nip01-only", action="store_true", help="skip the Infernet kinds' tag rules"
    )
    verify.set_defaults(func=_verify)
