"""Heartbeats at a live node (spec/job.md §Cancellation and heartbeats): ours get one answer with
``re``, and the answers to the node's own heartbeats are taken quietly — no error for a message
type its roles do not handle."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from conftest import node_config
from test_swarm import start

from infernet_ref.node.daemon import Node
from infernet_ref.node.messages import Message
from infernet_ref.node.transport import JobPeer, open_peer
from infernet_ref.nostr import generate_secret_key


async def test_heartbeat_gets_its_answer_and_no_error(tmp_path: Path, no_nodes: list[Node]) -> None:
    node = await start(
        no_nodes, node_config(tmp_path, "agg", roles=["aggregator"], heartbeat_interval_s=0.1)
    )
    unsolicited: list[Message] = []

    async def on_message(_: JobPeer, msg: Message, __: bytes | None) -> None:
        unsolicited.append(msg)

    peer = await open_peer(node.endpoint, generate_secret_key(), on_message=on_message)
    try:
        for seq in range(3):
            reply: Any
            reply, _ = await peer.request("sys.heartbeat", {"seq": seq}, timeout=5)
            assert reply.type == "sys.heartbeat"
            assert reply.body_dict["seq"] == seq
        await asyncio.sleep(0.8)  # the node's own heartbeats (every 0.1 s idle) were answered
        assert [m.type for m in unsolicited] == []
    finally:
        await peer.close()
