"""Provider announcements in the DHT (spec/node.md §Provider announcement, spec/dht.md).

:func:`announcement_info` turns a provider's state into the content of a kind-38200 event
(``provider-announcement.schema.json``): every configured device becomes a ``hardware.gpus``
entry of count 1 with its free memory (CPU tensor-parallel slots are named ``cpu``), each served
model its layer range, load as queued jobs and free KV blocks. :func:`offers_from_announcement`
is the aggregator's inverse, producing planner offers. :class:`Announcer` publishes the signed
event under every key it belongs to, at start and then periodically, so load stays current and
the record never expires while the provider runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.log import JsonLog
from infernet_ref.node.planner import ProviderOffer
from infernet_ref.version import __version__

MIB = 1 << 20
REPUBLISH_S = 60.0
TTL_S = 600
RETRY_S = 2.0


def announcement_info(
    *,
    endpoint: str,
    devices: list[dict[str, Any]],
    served: list[dict[str, Any]],
    free_kv_blocks: int,
    queue: int,
    started_at: float,
    now: float,
) -> dict[str, Any]:
    gpus = [
        {
            "model": "cpu" if d["kind"] == "cpu" else "cuda",
            "count": 1,
            "memory_mib": int(d["memory_bytes"] // MIB),
        }
        for d in devices[:16]
    ]
    ram = sum(int(d["memory_bytes"]) for d in devices) // MIB
    return {
        "v": 1,
        "hardware": {
            "gpus": gpus,
            "cpu": {"model": "cpu", "cores": os.cpu_count() or 1},
            "ram_mib": ram,
        },
        "models": [
            {
                "cid": m["cid"],
                "layers": [m["layer_start"], m["layer_end"]],
                "total_layers": m["num_layers"],
            }
            for m in served[:8]
        ],
        "load": {"queue": queue, "free_kv_blocks": free_kv_blocks},
        "endpoints": [endpoint],
        "software": {"name": "infernet-ref", "version": __version__[:32]},
        "uptime": max(0, int(now - started_at)),
    }


def offers_from_announcement(
    event: dict[str, Any], model: str, *, reputation: float = 1.0
) -> list[ProviderOffer]:
    """Planner offers for ``model`` from a verified kind-38200 event (spec/dht.md)."""
    from infernet_ref.dht.records import KIND_PROVIDER, parse_announcement  # noqa: PLC0415

    if event.get("kind") != KIND_PROVIDER:
        return []
    info = parse_announcement(event)
    memory = tuple(
        g["memory_mib"] * MIB for g in info["hardware"]["gpus"] for _ in range(g["count"])
    )
    endpoint = next(
        (e for e in info["endpoints"] if e.rstrip("/").endswith("/job")), info["endpoints"][0]
    )
    out = []
    for m in info["models"]:
        if m["cid"] == model:
            out.append(
                ProviderOffer(
                    pubkey=event["pubkey"],
                    endpoint=endpoint,
                    device_memory=memory,
                    layer_start=m["layers"][0],
                    layer_end=m["layers"][1],
                    load=min(1.0, info["load"]["queue"] / 16),
                    reputation=reputation,
                )
            )
    return out


async def dht_offers(dht: Any, model: str, log: JsonLog) -> list[ProviderOffer]:
    """Look up ``provider_key(model)`` and turn every valid announcement into offers."""
    from infernet_ref.dht.records import provider_key  # noqa: PLC0415

    out: list[ProviderOffer] = []
    for event in await dht.get(provider_key(model)):
        try:
            out += offers_from_announcement(event, model)
        except InfernetError as exc:
            log.info(
                "discovery.bad_announcement",
                pubkey=str(event.get("pubkey"))[:16],
                err=str(exc)[:200],
            )
    return out


class Announcer:
    """Publishes this provider's announcement every ``interval`` seconds."""

    def __init__(
        self, dht: Any, secret_key: bytes, info: Any, log: JsonLog, interval: float = REPUBLISH_S
    ) -> None:
        self.dht, self.sk, self.info, self.log, self.interval = dht, secret_key, info, log, interval
        self.task: asyncio.Task[None] | None = None
        self.published = 0

    async def publish_once(self) -> int:
        from infernet_ref.dht.records import build_announcement, record_keys  # noqa: PLC0415

        now = int(time.time())
        info = self.info()
        if info is None:  # nothing served yet (models still being fetched)
            return 0
        event = build_announcement(self.sk, info, created_at=now, ttl=TTL_S)
        stored = 0
        for key in record_keys(event):
            res = await self.dht.put(key, event)
            stored += int(getattr(res, "stored", 1) or 0)
        self.published += 1
        return stored

    async def _loop(self) -> None:
        while True:
            stored = 0
            try:
                stored = await self.publish_once()
                self.log.debug("provider.announced", stored=stored)
            except (InfernetError, OSError, TimeoutError) as exc:
                self.log.warning("provider.announce_failed", err=str(exc)[:200])
            # nobody took the record (alone in the DHT so far): try again soon
            await asyncio.sleep(self.interval if stored else min(self.interval, RETRY_S))

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
