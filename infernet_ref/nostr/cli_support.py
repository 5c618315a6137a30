"""Helpers shared by the identity-layer commands (`infernet key`, `event`, `nip44`)."""

from __future__ import annotations

import argparse
import os
import sys

from infernet_ref.errors import LocalProtocolError

KEY_ENV = "INFERNET_KEY_FILE"


def add_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key",
        metavar="FILE",
        default=os.environ.get(KEY_ENV),
        help=f"secret key file (nsec, mode 0600); default ${KEY_ENV}",
    )


def load_key(args: argparse.Namespace) -> bytes:
    from infernet_ref.nostr import load_key_file  # noqa: PLC0415

    if not args.key:
        raise LocalProtocolError(f"no key file: pass --key FILE or set {KEY_ENV}")
    return load_key_file(args.key)


def parse_pubkey(text: str) -> bytes:
    """A public key given as 64 hex characters or an npub."""
    from infernet_ref.nostr import check_public_key, nip19_decode  # noqa: PLC0415

    text = text.strip()
    if text.startswith("npub1"):
        decoded = nip19_decode(text)
        assert isinstance(decoded.data, bytes)
        return check_public_key(decoded.data)
    return check_public_key(text)


def read_stdin_text(limit: int = 1 << 26) -> str:
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise LocalProtocolError(f"stdin exceeds {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LocalProtocolError(f"stdin is not UTF-8 (byte {exc.start})") from exc
