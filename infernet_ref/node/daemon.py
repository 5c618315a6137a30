"""The node daemon: one process, one key, the roles of its config (spec/node.md).

Theory of operation. :class:`Node` loads (or creates) its key, opens its SQLite store, starts one
WebSocket server (ws layer) whose handler routes ``/job`` to the job protocol and ``/content``
to the content exchange, and whose ``http_handler`` answers ``GET /.well-known/infernet`` with the
signed node-info event (re-signed per request so load figures are current). Job messages are
dispatched to the roles the config names (provider, aggregator); a message no role handles is
refused with 4003. :meth:`Node.stop` is the graceful shutdown: stop accepting, end running jobs
in a recorded terminal state, close workers, checkpoint the database. :func:`run_node` adds the
SIGINT/SIGTERM handlers for ``infernet node run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.aggregator import Aggregator, ModelInfo
from infernet_ref.node.config import NodeConfig, host_port, load_or_create_key
from infernet_ref.node.discovery import Directory
from infernet_ref.node.errors import ErrorCode, NodeConfigError
from infernet_ref.node.log import JsonLog
from infernet_ref.node.messages import Message, body_table
from infernet_ref.node.nodeinfo import make_node_info
from infernet_ref.node.protocol import JobConnection, Side
from infernet_ref.node.provider import Provider, ServedModel
from infernet_ref.node.publish import CONTENT_PATH, JOB_PATH, ModelPublishing
from infernet_ref.node.store import Store
from infernet_ref.node.transport import JobPeer

STOP_TIMEOUT = 5.0  # seconds for open connections to close before the roles shut down


def served_models(cfg: NodeConfig, log: JsonLog) -> list[ServedModel]:
    out = []
    for m in cfg.raw.get("models", []):
        if "path" not in m:
            continue  # fetched through the content layer at start-up (Node._fetch_models)
        path = cfg.resolve(m["path"])
        try:
            n = int(json.loads((path / "config.json").read_text())["num_hidden_layers"])
        except (OSError, ValueError, KeyError) as exc:
            raise NodeConfigError(f"models: {path}/config.json unreadable: {exc}") from exc
        out.append(
            ServedModel(
                m["cid"],
                path,
                n,
                m.get("layer_start", 0),
                m.get("layer_end"),
                m.get("dtype", "float32"),
            )
        )
    return out


class Node(ModelPublishing):
    """A running node (see the module docstring)."""

    def __init__(
        self,
        cfg: NodeConfig,
        *,
        executor: Any = None,
        directory: Callable[[str], Awaitable[Any]] | None = None,
        log_stream: Any = None,
    ) -> None:
        self.cfg = cfg
        self.sk = load_or_create_key(cfg)
        from infernet_ref.nostr import public_key  # noqa: PLC0415

        self.pubkey = public_key(self.sk).hex()
        level = cfg.section("log").get("level", "info")
        stream = log_stream
        if stream is None and cfg.section("log").get("file"):
            stream = open(cfg.resolve(cfg.section("log")["file"]), "a", encoding="utf-8")  # noqa: SIM115
        self.log = JsonLog(stream, level=level, node=self.pubkey[:16])
        self.store = Store(cfg.data_dir / "state.sqlite3")
        self.roles = cfg.roles
        self._executor, self._directory = executor, directory
        self.provider: Provider | None = None
        self.aggregator: Aggregator | None = None
        self.server: Any = None
        self.peers: set[JobPeer] = set()
        self.started_at = int(time.time())
        self.max_message_size = int(cfg.raw["max_message_size"])
        self.content: Any = None
        self.dht: Any = None
        self.announcer: Any = None
        self.content_announcer: Any = None
        self.content_retry: asyncio.Task[None] | None = None
        self.fetch_task: asyncio.Task[None] | None = None
        self._stopping = False

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        from infernet_ref.nostr.auth import AuthChallenger  # noqa: PLC0415
        from infernet_ref.ws import serve  # noqa: PLC0415

        host, port = host_port(self.cfg.raw["listen"]["ws"])
        self.server = await serve(
            self._ws_handler,
            host,
            port,
            http_handler=self._http,
            max_message_size=self.max_message_size + 4096,
            compression=False,
        )
        self.endpoint = (
            self.cfg.raw.get("public_url") or f"ws://{host}:{self.server.port}{JOB_PATH}"
        )
        if not self.endpoint.endswith(JOB_PATH):
            self.endpoint = self.endpoint.rstrip("/") + JOB_PATH
        self.challenger = AuthChallenger(self.endpoint)
        self._start_content()
        await self._start_dht()
        await self._publish_models()
        if "provider" in self.roles:
            self._start_provider()
        if "aggregator" in self.roles:
            self._start_aggregator()
        self.log.info("node.started", endpoint=self.endpoint, roles=self.roles, pubkey=self.pubkey)

    async def _start_dht(self) -> None:
        """Join the DHT (spec/dht.md §Join) on listen.dht through the bootstrap peers."""
        try:
            from infernet_ref.dht import DHTNode  # noqa: PLC0415

            host, port = host_port(self.cfg.raw["listen"]["dht"])
            boot = [host_port(b) for b in self.cfg.raw.get("bootstrap", [])]
            self.dht = await DHTNode.create(self.sk, host, port, bootstrap=boot or None)
            self.log.info("node.dht_joined", address=list(self.dht.address), bootstrap=len(boot))
        except (ImportError, InfernetError, OSError) as exc:
            self.dht = None
            self.log.warning("node.dht_unavailable", err=str(exc)[:300])

    def _announcement(self) -> dict[str, Any] | None:
        from infernet_ref.node.announce import announcement_info  # noqa: PLC0415

        assert self.provider is not None
        p = self.provider
        if not p.models:
            return None
        served = [
            {
                "cid": m.cid,
                "layer_start": m.layer_start,
                "layer_end": m.end,
                "num_layers": m.num_layers,
            }
            for m in p.models.values()
        ]
        return announcement_info(
            endpoint=self.endpoint,
            devices=self._devices(),
            served=served,
            free_kv_blocks=max(0, p.max_sessions - len(p.sessions)) * 64,
            queue=len(p.sessions),
            started_at=self.started_at,
            now=time.time(),
        )

    def _devices(self) -> list[dict[str, Any]]:
        return list(
            self.cfg.section("resources").get("devices")
            or [{"kind": "cpu", "memory_bytes": _free_memory()}]
        )

    def _start_content(self) -> None:
        try:
            from infernet_ref.content.exchange.server import ContentServer  # noqa: PLC0415
            from infernet_ref.content.store import BlockStore  # noqa: PLC0415

            self.content = ContentServer(BlockStore(self.cfg.data_dir / "blocks"))
        except (ImportError, InfernetError, OSError) as exc:
            self.log.warning("node.content_unavailable", err=str(exc))

    def _start_provider(self) -> None:
        executor = self._executor
        if executor is None:
            from infernet_ref.node.sandbox import select_executor  # noqa: PLC0415

            executor = select_executor(self.cfg.raw)
        res = self.cfg.section("resources")
        self.provider = Provider(
            models=served_models(self.cfg, self.log),
            executor=executor,
            store=self.store,
            log=self.log,
            sandbox=self.cfg.section("sandbox"),
            max_sessions=int(res.get("max_concurrent_sessions", 16)),
            kv_block_size=int(res.get("kv_block_size", 16)),
            secret_key=self.sk,
            device="cuda" if any(d["kind"] == "cuda" for d in res.get("devices", [])) else "cpu",
            max_batch=int(res.get("max_batch_sessions", 16)),
        )
        if any("path" not in m for m in self.cfg.raw.get("models", [])):
            self.fetch_task = asyncio.create_task(self._fetch_models())
        if self.dht is not None and self.cfg.raw.get("models"):
            from infernet_ref.node.announce import Announcer  # noqa: PLC0415

            self.announcer = Announcer(self.dht, self.sk, self._announcement, self.log)
            self.announcer.start()
        self.log.info(
            "provider.ready",
            executor=getattr(executor, "name", type(executor).__name__),
            models=[m.cid for m in self.provider.models.values()],
        )

    def _start_aggregator(self) -> None:
        lookup = None
        if self.dht is not None:
            from infernet_ref.node.announce import dht_offers  # noqa: PLC0415

            dht = self.dht

            async def lookup_fn(model: str) -> Any:
                return await dht_offers(dht, model, self.log)

            lookup = lookup_fn
        directory = self._directory or Directory(
            peers=list(self.cfg.raw.get("peers", [])),
            log=self.log,
            reputation=self.store.reputation,
            dht_lookup=lookup,
        )
        local = {
            m["cid"]: self.cfg.resolve(m["path"])
            for m in self.cfg.raw.get("models", [])
            if "path" in m
        }

        async def models(cid: str) -> ModelInfo:
            if cid in local:
                return ModelInfo.from_dir(cid, local[cid])
            if self.dht is None:
                raise InfernetError(
                    f"model {cid} is unknown to this aggregator (no local copy, no DHT)"
                )
            from infernet_ref.node.modelfetch import fetch_config  # noqa: PLC0415

            providers = await self._content_providers(cid, wait=5)
            return ModelInfo.from_config(cid, await fetch_config(cid, providers))

        agg = self.cfg.section("aggregator")
        self.aggregator = Aggregator(
            secret_key=self.sk,
            store=self.store,
            log=self.log,
            directory=directory,
            models=models,
            stage_timeout=float(agg.get("stage_timeout_s", 30)),
            max_reroutes=int(agg.get("max_reroutes", 3)),
            submits_per_minute=float(agg.get("submits_per_minute", 60)),
            max_active_per_client=int(agg.get("max_active_jobs_per_client", 4)),
            validation_rate=float(agg.get("validation_rate", 0.0)),
        )
        stale = self.aggregator.recover()
        if stale:
            self.log.warning("aggregator.recovered", failed_jobs=stale)

    async def stop(self) -> None:
        """Graceful shutdown (spec/node.md §Logs and shutdown); idempotent, bounded in time."""
        if self._stopping:
            return
        self._stopping = True
        if self.server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self.server.close()
        if self.aggregator is not None:
            await self.aggregator.close()
        for peer in list(self.peers):
            with contextlib.suppress(Exception):
                await peer.close()
        if self.fetch_task is not None:
            self.fetch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.fetch_task
        if self.announcer is not None:
            await self.announcer.stop()
        if self.content_retry is not None:
            self.content_retry.cancel()
        if self.content_announcer is not None:
            with contextlib.suppress(Exception):
                await self.content_announcer.stop()
        if self.provider is not None:
            await self.provider.close()
        if self.dht is not None:
            with contextlib.suppress(Exception):
                await self.dht.close()
        self.store.close()
        self.log.info("node.stopped")

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- node info ---------------------------------------------------------------------------
    def node_info(self) -> dict[str, Any]:
        caps: dict[str, Any] = {
            "job_protocol": [1],
            "message_types": sorted(body_table()),
            "max_message_size": self.max_message_size,
        }
        if self.provider is not None:
            self.cfg.section("resources")
            devices = self._devices()
            caps.update(
                sandbox=_sandbox_name(self.provider.executor),
                models=sorted(self.provider.models),
                devices=len(devices),
                memory_bytes=sum(d["memory_bytes"] for d in devices),
                device_memory=[d["memory_bytes"] for d in devices],
                kv_block_size=self.provider.kv_block_size,
                max_sessions=self.provider.max_sessions,
                active_sessions=len(self.provider.sessions),
                served=[
                    {
                        "cid": m.cid,
                        "layer_start": m.layer_start,
                        "layer_end": m.end,
                        "dtype": m.dtype,
                    }
                    for m in self.provider.models.values()
                ],
            )
        endpoints = {"ws": self.endpoint, "content": self.endpoint[: -len(JOB_PATH)] + CONTENT_PATH}
        if self.dht is not None:
            endpoints["dht"] = "{}:{}".format(*self.dht.address)
        return make_node_info(
            self.sk,
            roles=self.roles,
            endpoints=endpoints,
            capabilities=caps,
            started_at=self.started_at,
            now=int(time.time()),
        )

    async def _http(self, req: Any) -> Any:
        from infernet_ref.ws import HttpResponse  # noqa: PLC0415

        path = req.path.split("?")[0]
        if path == "/.well-known/infernet":
            if req.method != "GET":
                return HttpResponse(405, [("Allow", "GET")], b"")
            body = json.dumps(self.node_info(), separators=(",", ":")).encode()
            return HttpResponse(200, [("Content-Type", "application/json")], body)
        if path not in (JOB_PATH, CONTENT_PATH):
            return HttpResponse(404, [("Content-Type", "text/plain")], b"not found\n")
        return None

    # ---- connections -------------------------------------------------------------------------
    async def _ws_handler(self, ws: Any) -> None:
        path = ws.path.split("?")[0]
        if path == CONTENT_PATH and self.content is not None:
            await self.content.handle(ws)
            return
        if path != JOB_PATH:
            await ws.close(1008, "unknown path")
            return
        conn = JobConnection(
            Side.SERVER,
            self.endpoint,
            self.sk,
            time.time(),
            challenger=self.challenger,
            max_message_size=self.max_message_size,
            heartbeat_interval=float(self.cfg.raw["heartbeat_interval_s"]),
            id_prefix="n",
        )
        peer = JobPeer(
            ws, conn, log=self.log, on_message=self._dispatch, on_close=self._peer_closed
        )
        self.peers.add(peer)
        await peer._flush()
        peer.start()
        await peer.wait_closed()

    async def _dispatch(self, peer: JobPeer, msg: Message, payload: bytes | None) -> None:
        if self.provider is not None and msg.type in Provider.HANDLED:
            await self.provider.handle(peer, msg, payload)
        elif self.aggregator is not None and msg.type in Aggregator.HANDLED:
            await self.aggregator.handle(peer, msg, payload)
        elif msg.type in (
            "sys.ok",
            "sys.error",
            "sys.heartbeat",  # answers to our own heartbeats (the core answers theirs)
            "job.accept",
            "job.reject",
            "stage.ready",
            "stage.output",
            "stage.token",
            "stage.failed",
            "job.progress",
            "job.result",
        ):
            self.log.debug("node.stray_reply", type=msg.type, re=msg.re)
        else:
            await peer.send_error(
                ErrorCode.FORBIDDEN,
                f"this node ({', '.join(self.roles)}) does not handle {msg.type}",
                re=msg.id,
            )

    async def _peer_closed(self, peer: JobPeer) -> None:
        self.peers.discard(peer)
        if self.provider is not None:
            await self.provider.peer_closed(peer)
        if self.aggregator is not None:
            await self.aggregator.client_closed(peer)


def _free_memory() -> int:
    try:
        import psutil  # noqa: PLC0415

        return int(psutil.virtual_memory().available)
    except (ImportError, OSError):
        return 1 << 30


def _sandbox_name(executor: Any) -> str:
    name = str(getattr(executor, "name", "none"))
    return name if name in ("docker", "bubblewrap", "in-process") else "none"


def run_node(cfg: NodeConfig, *, ready_file: Path | None = None) -> int:
    """``infernet node run``: start, serve until SIGINT/SIGTERM, stop gracefully."""

    async def main() -> int:
        node = Node(cfg)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await node.start()
        if ready_file is not None:
            tmp = ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"endpoint": node.endpoint, "pubkey": node.pubkey}))
            tmp.replace(ready_file)
        print(
            json.dumps({"event": "ready", "endpoint": node.endpoint, "pubkey": node.pubkey}),
            flush=True,
        )
        await stop.wait()
        node.log.info("node.signal", note="shutting down")
        await node.stop()
        return 0

    from infernet_ref.ws.loop import run  # noqa: PLC0415

    try:
        return run(main())  # uvloop when installed (DESIGN.md)
    except (NodeConfigError, InfernetError) as exc:
        print(f"infernet node: {exc}", file=sys.stderr)
        return 2
