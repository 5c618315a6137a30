"""``infernet nip44 encrypt|decrypt``: NIP-44 v2 and chunked payloads (spec/nostr.md §NIP-44)."""

from __future__ import annotations

import argparse
import base64
import binascii
import sys

from infernet_ref.errors import LocalProtocolError
from infernet_ref.nostr.cli_support import add_key_argument, load_key, parse_pubkey, read_stdin_text


def _conversation_key(args: argparse.Namespace, peer: str) -> bytes:
    from infernet_ref.nostr import nip44_conversation_key  # noqa: PLC0415

    return nip44_conversation_key(load_key(args), parse_pubkey(peer))


def _encrypt(args: argparse.Namespace) -> int:
    from infernet_ref.nostr import chunked_seal, nip44_encrypt  # noqa: PLC0415

    ck = _conversation_key(args, args.to)
    if args.chunked:
        data = sys.stdin.buffer.read()
        print(base64.b64encode(chunked_seal(data, ck)).decode("ascii"))
    else:
        print(nip44_encrypt(read_stdin_text(), ck))
    return 0


def _decrypt(args: argparse.Namespace) -> int:
    from infernet_ref.nostr import chunked_open, nip44_decrypt  # noqa: PLC0415

    ck = _conversation_key(args, args.sender)
    payload = read_stdin_text().strip()
    if args.chunked:
        try:
            blob = base64.b64decode(payload, validate=True)
        except binascii.Error as exc:
            raise LocalProtocolError(f"stdin is not base64: {exc}") from exc
        sys.stdout.buffer.write(chunked_open(blob, ck))
    else:
        sys.stdout.write(nip44_decrypt(payload, ck))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("nip44", help="NIP-44 v2 encryption between two keys (stdin to stdout)")
    cmds = parser.add_subparsers(dest="nip44_command", metavar="ACTION", required=True)
    enc = cmds.add_parser("encrypt", help="encrypt stdin to a public key; print base64")
    add_key_argument(enc)
    enc.add_argument("--to", required=True, metavar="PUBKEY", help="recipient (hex or npub)")
    enc.add_argument(
        "--chunked", action="store_true", help="nip44-chunked-v1 byte form, any size of bytes"
    )
    enc.set_defaults(func=_encrypt)
    dec = cmds.add_parser("decrypt", help="decrypt the base64 payload on stdin")
    add_key_argument(dec)
    dec.add_argument(
        "--from", dest="sender", required=True, metavar="PUBKEY", help="sender (hex or npub)"
    )
    dec.add_argument("--chunked", action="store_true", help="the payload is nip44-chunked-v1")
    dec.set_defaults(func=_decrypt)
