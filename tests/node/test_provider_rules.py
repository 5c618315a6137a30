"""Provider-side rules of spec/job.md §Dispatch and pipeline sessions, over real connections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import node_config

from infernet_ref.node.daemon import Node
from infernet_ref.node.errors import RemoteJobError
from infernet_ref.node.transport import open_peer
from infernet_ref.nostr import generate_secret_key
from infernet_ref.runtime.frames import ActivationFrame, decode_frame, encode_frame

SANDBOX = {"backend": "in-process", "allow_in_process": True}


def frame(session: str, pos: int, ids: list[int]) -> bytes:
    return encode_frame(
        ActivationFrame(session, pos, "input_ids", torch.tensor(ids, dtype=torch.int64))
    )


async def test_session_rules(tmp_path: Path, tiny_model: Any, no_nodes: list[Node]) -> None:
    path, _, cid = tiny_model
    prov = Node(
        node_config(
            tmp_path,
            "p",
            roles=["provider"],
            sandbox=SANDBOX,
            models=[{"cid": cid, "path": str(path), "layer_end": 4}],
        )
    )
    await prov.start()
    no_nodes.append(prov)
    shard = {"stage": 0, "layer_start": 0, "layer_end": 4, "num_layers": 4, "tp": 1}
    a = await open_peer(prov.endpoint, generate_secret_key())
    b = await open_peer(prov.endpoint, generate_secret_key())
    try:
        with pytest.raises(RemoteJobError) as exc:  # stage.open before offer/assign
            await a.request(
                "stage.open",
                {"job": "j-00000001", "session": "s1", "shard": shard, "max_tokens": 16},
            )
        assert exc.value.code == 4040
        reply, _ = await a.request(
            "job.offer", {"job": "j-00000001", "model": cid, "shard": shard, "max_tokens": 16}
        )
        assert reply.type == "job.accept"
        bad_shard = dict(shard, layer_end=5, num_layers=5)
        with pytest.raises(RemoteJobError) as exc:
            await b.request(
                "job.offer",
                {"job": "j-00000002", "model": cid, "shard": bad_shard, "max_tokens": 16},
            )
        assert exc.value.code == 4000  # wrong layer count for the model
        with pytest.raises(RemoteJobError) as exc:
            await b.request("job.assign", {"job": "j-00000001", "model": cid, "shard": shard})
        assert exc.value.code == 4003  # another peer's job
        await a.request("job.assign", {"job": "j-00000001", "model": cid, "shard": shard})
        await a.request(
            "stage.open", {"job": "j-00000001", "session": "s1", "shard": shard, "max_tokens": 16}
        )
        with pytest.raises(RemoteJobError) as exc:
            await a.request(
                "stage.open",
                {"job": "j-00000001", "session": "s1", "shard": shard, "max_tokens": 16},
            )
        assert exc.value.code == 4091
        with pytest.raises(RemoteJobError) as exc:  # a session opened on another connection
            await b.request(
                "stage.forward",
                {"session": "s1", "step": 0, "position": 0},
                payload=frame("s1", 0, [1, 2]),
            )
        assert exc.value.code == 4041
        with pytest.raises(RemoteJobError) as exc:  # the frame names another session
            await a.request(
                "stage.forward",
                {"session": "s1", "step": 0, "position": 0},
                payload=frame("s2", 0, [1, 2]),
            )
        assert exc.value.code == 4000
        _, out = await a.request(
            "stage.forward",
            {"session": "s1", "step": 0, "position": 0},
            payload=frame("s1", 0, [1, 2, 3]),
        )
        assert out is not None
        assert decode_frame(out).kind == "logits"
        with pytest.raises(RemoteJobError) as exc:  # does not continue the session
            await a.request(
                "stage.forward",
                {"session": "s1", "step": 1, "position": 1},
                payload=frame("s1", 1, [4]),
            )
        assert exc.value.code == 4090
        _, out = await a.request(
            "stage.forward",
            {"session": "s1", "step": 1, "position": 3},
            payload=frame("s1", 3, [4]),
        )
        assert out is not None
        with pytest.raises(RemoteJobError) as exc:
            await a.request(
                "stage.forward",
                {"session": "s1", "step": 2, "position": 4},
                payload=frame("s1", 4, [97]),
            )
        assert exc.value.code == 4000  # token id outside the vocabulary, refused by the worker
        reply, _ = await a.request("stage.close", {"session": "s1"})
        assert reply.type == "sys.ok"
        reply, _ = await a.request("job.cancel", {"job": "j-00000001"})
        assert reply.type == "sys.ok"
        assert prov.store.get_job("j-00000001", "provider").state.value == "cancelled"
    finally:
        await a.close()
        await b.close()
