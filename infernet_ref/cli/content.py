"""``infernet content``: CIDs, the local block store, and fetching/serving over the exchange.

``cid PATH`` prints exactly the CID that ``ipfs add --cid-version=1 --raw-leaves
--chunker=size-1048576 -Q`` (``-r`` for a folder) prints (spec/content.md §2-3). ``add``,
``get``, ``serve``, ``verify``, ``pin``/``unpin``/``gc``, ``export``/``import`` (CAR v1) and
``cat`` work on the block store in ``--store`` (default ``$INFERNET_HOME/content``, else
``~/.infernet/content``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any


def _store_dir(args: argparse.Namespace) -> Path:
    if args.store:
        return Path(args.store)
    home = os.environ.get("INFERNET_HOME") or str(Path.home() / ".infernet")
    return Path(home) / "content"


def _bar(total: int | None, desc: str) -> Any:
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
    )


def _total_bytes(path: Path, include_hidden: bool) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        if not include_hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            p = Path(dirpath) / f
            if (include_hidden or not f.startswith(".")) and p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def _cid(args: argparse.Namespace) -> int:
    from infernet_ref.content.builder import build_path  # noqa: PLC0415

    print(build_path(args.path, include_hidden=args.hidden).cid)
    return 0


def _add(args: argparse.Namespace) -> int:
    from infernet_ref.content.builder import build_path  # noqa: PLC0415
    from infernet_ref.content.store import BlockStore  # noqa: PLC0415

    path = Path(args.path)
    with BlockStore(_store_dir(args)) as store, _bar(_total_bytes(path, args.hidden), "add") as bar:
        root = build_path(path, store.sink, include_hidden=args.hidden, on_bytes=bar.update).cid
        if not args.no_pin:
            store.pin(root, name=path.name)
    print(root)
    return 0


async def _get_async(args: argparse.Namespace) -> int:
    from infernet_ref.content.cid import Codec, parse_cid  # noqa: PLC0415
    from infernet_ref.content.dagpb import decode_node  # noqa: PLC0415
    from infernet_ref.content.exchange import ExchangeClient  # noqa: PLC0415
    from infernet_ref.content.reader import export_to_path, file_size  # noqa: PLC0415
    from infernet_ref.content.store import BlockStore  # noqa: PLC0415

    root = parse_cid(args.cid).to_v1()
    providers = list(args.provider or [])
    if args.dht:
        providers += await _dht_providers(args.dht, root)
    if not providers:
        print(
            "infernet content get: no provider (use --provider URL or --dht HOST:PORT)",
            file=sys.stderr,
        )
        return 2
    with BlockStore(_store_dir(args)) as store:
        async with ExchangeClient(providers, store=store, on_bad_peer=_warn_bad_peer) as client:
            block = await client.get_block(root)
            if root.codec == Codec.RAW:
                total = len(block)
            else:
                node = decode_node(block)
                unixfs_file = not node.links or node.links[0].name == ""
                total = (
                    file_size(root, block)
                    if unixfs_file
                    else sum(lk.tsize or 0 for lk in node.links)
                )
            with _bar(total, "get") as bar:
                stats = await client.fetch_dag(root, progress=bar.update)
        export_to_path(store, root, args.out)
    got = ", ".join(f"{u}: {n / 1e6:.1f} MB" for u, n in stats.per_provider.items())
    print(
        f"{root} -> {args.out} ({stats.blocks_fetched} blocks fetched, {stats.blocks_local} local; {got})",
        file=sys.stderr,
    )
    return 0


def _warn_bad_peer(url: str, reason: str) -> None:
    print(f"infernet content get: dropped provider {url}: {reason}", file=sys.stderr)


async def _dht_providers(bootstrap: str, root: Any) -> list[str]:
    from infernet_ref.content.providers import find_providers  # noqa: PLC0415
    from infernet_ref.dht import DHTNode  # noqa: PLC0415
    from infernet_ref.nostr import generate_secret_key  # noqa: PLC0415

    host, _, port = bootstrap.rpartition(":")
    node = await DHTNode.create(generate_secret_key(), bootstrap=[(host, int(port))])
    try:
        return await find_providers(node, root)
    finally:
        await node.close()


def _get(args: argparse.Namespace) -> int:
    return asyncio.run(_get_async(args))


async def _serve_async(args: argparse.Namespace) -> int:
    from infernet_ref.content.exchange import serve_content  # noqa: PLC0415
    from infernet_ref.content.store import BlockStore  # noqa: PLC0415

    with BlockStore(_store_dir(args)) as store:
        srv, _cs = await serve_content(store, args.host, args.port)
        url = f"ws://{args.host}:{srv.port}/content"
        print(f"serving {len(store)} blocks at {url}", file=sys.stderr, flush=True)
        announcer = None
        if args.dht:
            announcer = await _announce(args, store, url)
        try:
            await asyncio.Event().wait()
        finally:
            if announcer is not None:
                await announcer[0].stop()
                await announcer[1].close()
            await srv.close()
    return 0


async def _announce(args: argparse.Namespace, store: Any, url: str) -> Any:
    from infernet_ref.content.providers import ContentAnnouncer  # noqa: PLC0415
    from infernet_ref.dht import DHTNode  # noqa: PLC0415
    from infernet_ref.nostr import generate_secret_key, load_key_file  # noqa: PLC0415

    sk = load_key_file(args.key) if args.key else generate_secret_key()
    host, _, port = args.dht.rpartition(":")
    node = await DHTNode.create(sk, bootstrap=[(host, int(port))])
    ann = ContentAnnouncer(node, sk, url)
    for cid, _recursive, _name in store.pins():
        await ann.announce(cid)
    ann.start()
    return ann, node


def _serve(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_serve_async(args))
    except KeyboardInterrupt:
        return 0


def _verify(args: argparse.Namespace) -> int:
    from infernet_ref.content.store import BlockStore  # noqa: PLC0415

    with BlockStore(_store_dir(args)) as store:
        rep = store.verify(repair=args.repair)
    for c in rep.corrupt:
        print(f"corrupt {c}")
    for c in rep.missing:
        print(f"missing {c}")
    print(
        f"checked {rep.checked} blocks: {len(rep.corrupt)} corrupt, {len(rep.missing)} missing, "
        f"{len(rep.reindexed)} re-indexed, {rep.removed_tmp} temp files removed"
        + (" (repaired)" if args.repair and not rep.ok else ""),
        file=sys.stderr,
    )
    return 0 if rep.ok else 1


def _pin(args: argparse.Namespace) -> int:
    from infernet_ref.content.store import BlockStore  # noqa: PLC0415

    with BlockStore(_store_dir(args)) as store:
        if args.pin_command == "pin":
            store.pin(args.cid, recursive=not args.direct)
        elif args.pin_command == "unpin":
            if not store.unpin(args.cid):
                print(f"{args.cid} was not pinned", file=sys.stderr)
                return 1
        else:
            for c in store.gc():
                print(f"removed {c}")
    return 0


def _car(args: argparse.Namespace) -> int:
    from infernet_ref.content.car import export_car, import_car  # noqa: PLC0415
    from infernet_ref.content.cid import parse_cid  # noqa: PLC0415
    from infernet_ref.content.store import BlockStore  # noqa: PLC0415

    with BlockStore(_store_dir(args)) as store:
        if args.car_command == "export":
            with open(args.file, "wb") as f:
                n = export_car(store, parse_cid(args.cid), f)
            print(f"wrote {n} blocks to {args.file}", file=sys.stderr)
        else:
            with open(args.file, "rb") as f:
                roots, n = import_car(store, f)
            for r in roots:
                store.pin(r)
                print(r)
            print(f"imported {n} blocks", file=sys.stderr)
    return 0


def _target(store: Any, arg: str) -> Any:
    """``CID`` or ``CID/a/b``: the CID at that path (flat and HAMT-sharded directories alike)."""
    from infernet_ref.content.cid import parse_cid  # noqa: PLC0415
    from infernet_ref.content.reader import resolve_path  # noqa: PLC0415

    head, _, path = arg.partition("/")
    root = parse_cid(head)
    return resolve_path(store, root, path) if path else root


def _cat(args: argparse.Namespace) -> int:
    from infernet_ref.content.reader import file_size, read_range_local  # noqa: PLC0415
    from infernet_ref.content.store import BlockStore  # noqa: PLC0415

    with BlockStore(_store_dir(args)) as store:
        c = _target(store, args.cid)
        size = file_size(c, store.get(c))
        a, _, b = (args.range or "0:").partition(":")
        start, end = int(a or 0), min(int(b) if b else size, size)
        sys.stdout.buffer.write(read_range_local(store, c, start, max(start, end)))
    return 0


def _ls(args: argparse.Namespace) -> int:
    from infernet_ref.content.reader import directory_entries  # noqa: PLC0415
    from infernet_ref.content.store import BlockStore  # noqa: PLC0415

    with BlockStore(_store_dir(args)) as store:
        for name, link in directory_entries(store, _target(store, args.cid)):
            print(f"{link.cid}\t{link.tsize if link.tsize is not None else '-'}\t{name}")
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "content", help="content addressing: CIDs, block store, fetch and serve"
    )
    cmds = parser.add_subparsers(dest="content_command", metavar="SUBCOMMAND", required=True)

    def cmd(name: str, func: Any, help_: str, store: bool = True) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = cmds.add_parser(name, help=help_)
        if store:
            p.add_argument("--store", metavar="DIR", help="block store directory")
        p.set_defaults(func=func)
        return p

    p = cmd("cid", _cid, "print the IPFS-identical CID of a file or folder", store=False)
    p.add_argument("path")
    p.add_argument("--hidden", action="store_true", help="include dotfiles (as ipfs add --hidden)")
    p = cmd("add", _add, "add a file or folder to the block store and pin it")
    p.add_argument("path")
    p.add_argument("--hidden", action="store_true")
    p.add_argument("--no-pin", action="store_true")
    p = cmd("get", _get, "fetch a CID from providers and write it to --out")
    p.add_argument("cid")
    p.add_argument("--out", required=True, metavar="PATH")
    p.add_argument(
        "--provider", action="append", metavar="URL", help="ws://HOST:PORT/content (repeatable)"
    )
    p.add_argument(
        "--dht", metavar="HOST:PORT", help="find providers through this DHT bootstrap node"
    )
    p = cmd("serve", _serve, "serve the block store over the content exchange")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument(
        "--dht", metavar="HOST:PORT", help="announce pinned roots in the DHT through this node"
    )
    p.add_argument("--key", metavar="FILE", help="node key file for signing provider records")
    p = cmd("verify", _verify, "re-hash every stored block; exit 1 if any is corrupt or missing")
    p.add_argument("--repair", action="store_true", help="delete corrupt blocks, drop missing ones")
    p = cmd("pin", _pin, "pin a CID (recursively unless --direct)")
    p.add_argument("cid")
    p.add_argument("--direct", action="store_true")
    p.set_defaults(pin_command="pin")
    p = cmd("unpin", _pin, "remove a pin")
    p.add_argument("cid")
    p.set_defaults(pin_command="unpin")
    p = cmd("gc", _pin, "delete blocks no pin reaches")
    p.set_defaults(pin_command="gc")
    p = cmd("export", _car, "export a DAG as a CAR v1 file")
    p.add_argument("cid")
    p.add_argument("file")
    p.set_defaults(car_command="export")
    p = cmd("import", _car, "import a CAR v1 file (blocks verified) and pin its roots")
    p.add_argument("file")
    p.set_defaults(car_command="import")
    p = cmd("cat", _cat, "write a stored file (CID or CID/PATH; or --range A:B of it) to stdout")
    p.add_argument("cid", metavar="CID[/PATH]")
    p.add_argument("--range", metavar="A:B")
    p = cmd("ls", _ls, "list a stored directory (flat or HAMT-sharded): CID, Tsize, name")
    p.add_argument("cid", metavar="CID[/PATH]")
