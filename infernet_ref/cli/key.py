"""``infernet key generate|show``: secp256k1 identities (spec/nostr.md §Keys)."""

from __future__ import annotations

import argparse
import json
import sys

from infernet_ref.nostr.cli_support import add_key_argument, load_key


def _describe(sk: bytes, secret: bool) -> dict[str, str]:
    from infernet_ref.nostr import npub_encode, nsec_encode, public_key  # noqa: PLC0415

    pk = public_key(sk).hex()
    out = {"pubkey": pk, "npub": npub_encode(pk)}
    if secret:
        out["nsec"] = nsec_encode(sk)
    return out


def _generate(args: argparse.Namespace) -> int:
    from infernet_ref.nostr import generate_secret_key, save_key_file  # noqa: PLC0415

    sk = generate_secret_key()
    if args.out:
        save_key_file(args.out, sk)
        print(json.dumps({**_describe(sk, secret=False), "file": args.out}))
    else:
        print("infernet: no --out given; printing the secret key", file=sys.stderr)
        print(json.dumps(_describe(sk, secret=True)))
    return 0


def _show(args: argparse.Namespace) -> int:
    print(json.dumps(_describe(load_key(args), secret=args.secret)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("key", help="generate and show NOSTR identities")
    cmds = parser.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    gen = cmds.add_parser("generate", help="make a new secret key")
    gen.add_argument(
        "--out", metavar="FILE", help="write the key file here (mode 0600, never overwritten)"
    )
    gen.set_defaults(func=_generate)
    show = cmds.add_parser("show", help="print the public key (hex, npub) of a key file")
    add_key_argument(show)
    show.add_argument("--secret", action="store_true", help="also print the nsec")
    show.set_defaults(func=_show)
