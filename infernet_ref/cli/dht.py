"""``infernet dht serve|put|get|find``: run a DHT node or use one from the shell (spec/dht.md §API).

``serve`` runs a node until SIGINT/SIGTERM (or ``--duration`` seconds) and prints its address and
node ID. ``put``, ``get`` and ``find`` start a short-lived node that joins through ``--bootstrap``,
perform one operation and print JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _secret(args: argparse.Namespace) -> bytes:
    from infernet_ref.nostr import check_secret_key, generate_secret_key, load_key_file  # noqa: PLC0415

    if args.key_file:
        return load_key_file(args.key_file)
    if args.secret_hex:
        return check_secret_key(args.secret_hex)
    return generate_secret_key()


def _key(args: argparse.Namespace) -> bytes:
    from infernet_ref.dht.records import content_provider_key, node_record_key, provider_key  # noqa: PLC0415

    if args.content:
        return content_provider_key(args.content)
    if args.provider:
        return provider_key(args.provider)
    if args.node:
        return node_record_key(bytes.fromhex(args.node))
    if args.key and len(args.key) == 64:
        return bytes.fromhex(args.key)
    raise SystemExit("give --content CID, --provider MODEL_CID, --node NODE_ID or --key HEX64")


async def _with_node(args: argparse.Namespace, work: Any) -> int:
    from infernet_ref.dht import DHTNode  # noqa: PLC0415

    node = await DHTNode.create(
        _secret(args), host=args.host, port=args.port, bootstrap=args.bootstrap
    )
    try:
        result = await work(node)
    finally:
        await node.close()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415
    import contextlib  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from infernet_ref.dht import DHTNode  # noqa: PLC0415

    async def main() -> None:
        node = await DHTNode.create(
            _secret(args),
            host=args.host,
            port=args.port,
            bootstrap=args.bootstrap,
            public_addresses=args.public_address,
        )
        host, port = node.address
        print(f"listening on udp://{host}:{port} node {node.node_id.hex()}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
        await node.close()

    asyncio.run(main())
    return 0


def _put(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415
    import time  # noqa: PLC0415

    from infernet_ref.dht.records import build_content_record  # noqa: PLC0415

    sk = _secret(args)
    if args.event:
        with open(args.event, encoding="utf-8") as fh:
            event = json.load(fh)
    elif args.content and args.endpoint:
        event = build_content_record(sk, args.content, args.endpoint, created_at=int(time.time()))
    else:
        raise SystemExit("give --event FILE (a signed event) or --content CID --endpoint URL")
    key = _key(args)

    async def work(node: Any) -> Any:
        res = await node.put(key, event)
        return {
            "key": key.hex(),
            "event": event["id"],
            "stored": res.stored,
            "attempted": res.attempted,
        }

    return asyncio.run(_with_node(args, work))


def _get(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    key = _key(args)

    async def work(node: Any) -> Any:
        return await node.get(key, paths=args.paths)

    return asyncio.run(_with_node(args, work))


def _find(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    target = bytes.fromhex(args.target)

    async def work(node: Any) -> Any:
        found = await node.find_node(target, paths=args.paths)
        return [{"id": c.node_id.hex(), "host": c.host, "port": c.port} for c in found]

    return asyncio.run(_with_node(args, work))


def _common(p: argparse.ArgumentParser, *, port: int = 0) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port)
    p.add_argument("--bootstrap", type=_addr, action="append", default=[], metavar="HOST:PORT")
    p.add_argument("--key-file", help="nsec key file (infernet key generate); default: a fresh key")
    p.add_argument("--secret-hex", help="secret key as 64 hex characters (tests only)")


def _keyargs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--content", metavar="CID", help="content provider key of CID (kind 38201)")
    p.add_argument(
        "--provider", metavar="MODEL_CID", help="provider key of a model CID (kind 38200)"
    )
    p.add_argument("--node", metavar="NODE_ID", help="node record key of a node ID (hex)")
    p.add_argument("--key", metavar="HEX64", help="a raw 32-byte key")


def register(sub: Any) -> None:
    p = sub.add_parser("dht", help="Kademlia DHT node and client (spec/dht.md)")
    dsub = p.add_subparsers(dest="dht_command", required=True)
    s = dsub.add_parser("serve", help="run a DHT node")
    _common(s, port=4000)
    s.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    s.add_argument(
        "--public-address",
        type=_addr,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="an address peers reach this node at besides the bound one (e.g. a NAT's "
        "forwarded port); key proofs are signed only for these (spec/dht.md §Identity 2)",
    )
    s.set_defaults(func=_serve)
    pp = dsub.add_parser("put", help="store a signed record")
    _common(pp)
    _keyargs(pp)
    pp.add_argument("--event", help="JSON file with a signed event")
    pp.add_argument("--endpoint", help="with --content: build and sign a kind-38201 record")
    pp.set_defaults(func=_put)
    g = dsub.add_parser("get", help="fetch the records under a key")
    _common(g)
    _keyargs(g)
    g.add_argument("--paths", type=int, default=1, help="disjoint lookup paths (S/Kademlia)")
    g.set_defaults(func=_get)
    f = dsub.add_parser("find", help="find the nodes nearest a target ID")
    _common(f)
    f.add_argument("target", help="32-byte target as hex")
    f.add_argument("--paths", type=int, default=1)
    f.set_defaults(func=_find)
