"""Provider discovery for the aggregator (spec/job.md §Planning, spec/node.md §Node info).

Sources: the signed node-info documents of known peers (``peers`` in the config, read with a
plain ``GET /.well-known/infernet``, the round trip doubling as a latency probe) and, when the
node runs a DHT, kind-38200 provider announcements under ``provider_key(model)``. Every document
is verified (signature, schema, key equalities) before it is used; a peer that does not answer
or sends a bad document is skipped and logged. Each source yields
:class:`~infernet_ref.node.planner.ProviderOffer` objects, ranked later with the store's
reputation score.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import h11

from infernet_ref.encoding import json_decode
from infernet_ref.errors import InfernetError
from infernet_ref.node.errors import JobProtocolError
from infernet_ref.node.log import JsonLog
from infernet_ref.node.nodeinfo import verify_node_info
from infernet_ref.node.planner import ProviderOffer

WELL_KNOWN = "/.well-known/infernet"
MAX_DOC = 1 << 20


async def http_get(url: str, *, timeout: float = 5.0, max_size: int = MAX_DOC) -> tuple[int, bytes]:
    """A minimal HTTP/1.1 GET (h11), enough for ``/.well-known/infernet`` on a node."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    conn = h11.Connection(h11.CLIENT)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            writer.write(
                conn.send(
                    h11.Request(
                        method="GET",
                        target=target,
                        headers=[("Host", f"{host}:{port}"), ("Connection", "close")],
                    )
                )
                or b""
            )
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            status, body = 0, bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > max_size:
                        raise JobProtocolError(f"{url}: response larger than {max_size} bytes")
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return status, bytes(body)
        except h11.RemoteProtocolError as exc:
            raise JobProtocolError(f"{url}: bad HTTP response: {exc}") from exc
        finally:
            writer.close()


def well_known_url(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}{WELL_KNOWN}"


async def fetch_node_info(
    ws_url: str, *, timeout: float = 5.0
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """(event, verified content, round-trip seconds) of the node at ``ws_url``."""
    t0 = time.perf_counter()
    status, body = await http_get(well_known_url(ws_url), timeout=timeout)
    rtt = time.perf_counter() - t0
    if status != 200:
        raise JobProtocolError(f"{ws_url}: GET {WELL_KNOWN} answered {status}")
    try:
        event = json_decode(body, max_size=MAX_DOC)
    except InfernetError as exc:
        raise JobProtocolError(f"{ws_url}: node info is not JSON: {exc}") from exc
    return event, verify_node_info(event), rtt


def offers_from_info(
    info: dict[str, Any], model: str, *, latency_ms: float = 0.0, reputation: float = 1.0
) -> list[ProviderOffer]:
    """ProviderOffers for ``model`` from a verified node-info content."""
    caps = info["capabilities"]
    if "provider" not in info["roles"]:
        return []
    load = caps.get("active_sessions", 0) / max(1, caps.get("max_sessions", 1))
    out = []
    for served in caps.get("served", []):
        if served["cid"] != model:
            continue
        out.append(
            ProviderOffer(
                pubkey=info["pubkey"],
                endpoint=info["endpoints"]["ws"],
                device_memory=tuple(caps.get("device_memory", [])),
                layer_start=served["layer_start"],
                layer_end=served["layer_end"],
                kv_block_size=caps.get("kv_block_size", 16),
                load=min(1.0, load),
                latency_ms=latency_ms,
                reputation=reputation,
            )
        )
    return out


class Directory:
    """Combines static peers and the DHT into a provider list per model."""

    def __init__(
        self,
        *,
        peers: list[str],
        log: JsonLog,
        reputation: Callable[[str], float],
        dht_lookup: Callable[[str], Any] | None = None,
    ) -> None:
        self.peers, self.log, self.reputation, self.dht_lookup = (
            list(peers),
            log,
            reputation,
            dht_lookup,
        )
        self.static: list[ProviderOffer] = []

    async def __call__(self, model: str) -> list[ProviderOffer]:
        offers: dict[str, ProviderOffer] = {o.pubkey: o for o in self.static}
        results = await asyncio.gather(
            *(fetch_node_info(u) for u in self.peers), return_exceptions=True
        )
        for url, res in zip(self.peers, results, strict=True):
            if isinstance(res, BaseException):
                self.log.info("discovery.peer_unreachable", peer=url, err=str(res)[:200])
                continue
            _, info, rtt = res
            for o in offers_from_info(
                info, model, latency_ms=rtt * 1000, reputation=self.reputation(info["pubkey"])
            ):
                offers.setdefault(o.pubkey, o)
        if self.dht_lookup is not None:
            try:
                for o in await self.dht_lookup(model):
                    offers.setdefault(o.pubkey, o)
            except (InfernetError, OSError, TimeoutError) as exc:
                self.log.warning("discovery.dht_failed", model=model, err=str(exc)[:200])
        return [_with_rep(o, self.reputation(o.pubkey)) for o in offers.values()]


def _with_rep(o: ProviderOffer, rep: float) -> ProviderOffer:
    from dataclasses import replace  # noqa: PLC0415

    return replace(o, reputation=rep)
