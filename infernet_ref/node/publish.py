"""Model folders over the content layer, for the daemon (spec/node.md §Models).

A mixin of :class:`~infernet_ref.node.daemon.Node`: publishing local model folders (root CID
checked against the config, blocks added to the store, kind-38201 records announced until some
DHT node stores them) and fetching a provider's stage tensors for models it has no local copy
of (:mod:`infernet_ref.node.modelfetch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.errors import NodeConfigError
from infernet_ref.node.provider import ServedModel

JOB_PATH = "/job"
CONTENT_PATH = "/content"


class ModelPublishing:
    """Needs the Node attributes used below (cfg, content, dht, sk, store, log, provider, ...)."""

    cfg: Any
    content: Any
    dht: Any
    sk: bytes
    store: Any
    log: Any
    provider: Any
    endpoint: str
    announcer: Any
    content_announcer: Any
    content_retry: asyncio.Task[None] | None

    async def _publish_models(self) -> None:
        """Add local model folders to the block store and announce them (kind 38201).

        The folder's computed root CID must equal the configured ``cid``: a config naming the
        wrong folder is refused rather than served under a false name.
        """
        if self.content is None:
            return
        from infernet_ref.content.api import add_path  # noqa: PLC0415

        for m in self.cfg.raw.get("models", []):
            if "path" not in m:
                continue
            root = add_path(self.cfg.resolve(m["path"]), self.content.store)
            if root != m["cid"]:
                raise NodeConfigError(
                    f"models: {m['path']} has root CID {root}, not the configured {m['cid']}"
                )
            self.store.content_add(root, 0, pinned=True, now=time.time())
            if self.dht is not None:
                from infernet_ref.content.providers import ContentAnnouncer  # noqa: PLC0415

                if self.content_announcer is None:
                    url = self.endpoint[: -len(JOB_PATH)] + CONTENT_PATH
                    self.content_announcer = ContentAnnouncer(self.dht, self.sk, url)
                    self.content_announcer.start()
                self.content_retry = asyncio.create_task(self._announce_content(root))
        self.log.info(
            "node.models_published",
            models=[m["cid"] for m in self.cfg.raw.get("models", []) if "path" in m],
        )

    async def _announce_content(self, cid: str, *, attempts: int = 150, delay: float = 2.0) -> None:
        """Announce ``cid`` until some DHT node stores the record (then the 30-min republish holds)."""
        for _ in range(attempts):
            try:
                res = await self.content_announcer.announce(cid)
                if getattr(res, "stored", 1):
                    return
            except (InfernetError, OSError, TimeoutError) as exc:
                self.log.warning("node.content_announce_failed", cid=cid, err=str(exc)[:200])
            await asyncio.sleep(delay)

    async def _content_providers(self, cid: str, *, wait: float = 60.0) -> list[str]:
        """Content endpoints for ``cid`` from the DHT, waiting up to ``wait`` s for a record."""
        from infernet_ref.content.providers import find_providers  # noqa: PLC0415

        deadline = time.monotonic() + wait
        while self.dht is not None:
            found = await find_providers(self.dht, cid)
            if found or time.monotonic() > deadline:
                return found
            await asyncio.sleep(1.0)
        return []

    async def _fetch_models(self) -> None:
        """Provider models without a local path: fetch the served layers through the content layer."""
        from infernet_ref.node.modelfetch import fetch_stage  # noqa: PLC0415

        assert self.provider is not None
        for m in self.cfg.raw.get("models", []):
            if "path" in m:
                continue
            try:
                providers = await self._content_providers(m["cid"])
                t0 = time.monotonic()
                folder, n, nbytes = await fetch_stage(
                    m["cid"],
                    providers,
                    self.cfg.data_dir / "models",
                    start=m.get("layer_start", 0),
                    end=m.get("layer_end"),
                    store_dir=self.cfg.data_dir / "blocks",
                )
            except (InfernetError, OSError, KeyError, ValueError) as exc:
                self.log.error("provider.model_fetch_failed", cid=m["cid"], err=str(exc)[:300])
                continue
            served = ServedModel(
                m["cid"],
                folder,
                n,
                m.get("layer_start", 0),
                m.get("layer_end"),
                m.get("dtype", "float32"),
            )
            self.provider.models[served.cid] = served
            self.log.info(
                "provider.model_fetched",
                cid=m["cid"],
                layers=[served.layer_start, served.end],
                tensor_bytes=nbytes,
                seconds=round(time.monotonic() - t0, 3),
                providers=len(providers),
            )
        if self.announcer is not None:
            with contextlib.suppress(InfernetError, OSError):
                await self.announcer.publish_once()
