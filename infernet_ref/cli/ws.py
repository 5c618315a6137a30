"""``infernet ws echo``: the WebSocket echo server conformance runs point at (spec/ws.md)."""

from __future__ import annotations

import argparse
import sys


def _echo(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415
    import logging  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import ssl  # noqa: PLC0415

    from infernet_ref import ws  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    context = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)

    async def echo(conn: ws.WebSocket) -> None:
        async for message in conn:
            await conn.send(message)

    async def main() -> None:
        server = await ws.serve(
            echo,
            args.host,
            args.port,
            ssl=context,
            compression=not args.no_compression,
            max_message_size=args.max_message_size,
            ping_interval=None,
        )
        scheme = "wss" if context else "ws"
        host, port = server.address
        print(f"listening on {scheme}://{host}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.close()

    ws.run(main(), use_uvloop=not args.no_uvloop and None)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("ws", help="WebSocket tools (RFC 6455)")
    cmds = parser.add_subparsers(dest="ws_command", metavar="SUBCOMMAND", required=True)
    echo = cmds.add_parser("echo", help="run an echo server until interrupted")
    echo.add_argument("--host", default="127.0.0.1")
    echo.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed)")
    echo.add_argument(
        "--no-compression", action="store_true", help="do not accept permessage-deflate"
    )
    echo.add_argument("--max-message-size", type=int, default=32 * 1024 * 1024)
    echo.add_argument("--tls-cert", help="PEM certificate chain: serve wss://")
    echo.add_argument("--tls-key", help="PEM private key for --tls-cert")
    echo.add_argument(
        "--no-uvloop", action="store_true", help="use asyncio's loop even if uvloop is installed"
    )
    echo.add_argument(
        "-v", "--verbose", action="store_true", help="log handshakes and protocol violations"
    )
    echo.set_defaults(func=_echo)
