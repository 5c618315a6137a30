"""Directly routed sessions (spec/job.md §Direct routing, §Failure and replay, §Encryption), driven
over real connections against in-process provider nodes, the test speaking the wire protocol as
the driver, the client, the previous stage and strangers — each with a key of its own. Tokens
are checked against Hugging Face ``transformers`` greedy decoding and the result hash is
recomputed here with ``hashlib`` (the outside oracles)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import hf_greedy, node_config

from infernet_ref.node.client import submit_job
from infernet_ref.node.daemon import Node
from infernet_ref.node.errors import RemoteJobError
from infernet_ref.node.messages import Message
from infernet_ref.node.payloads import open_json, seal_json
from infernet_ref.node.transport import JobPeer, open_peer
from infernet_ref.nostr import generate_secret_key, public_key
from infernet_ref.runtime.frames import ActivationFrame, encode_frame

SANDBOX = {"backend": "in-process", "allow_in_process": True}
PROMPT = [1, 2, 3, 4, 5, 6]  # greedy: 9 6 51 33 9 6 27 6 (varied, unlike many prompts)
NEW = 8
WHOLE = {"stage": 0, "layer_start": 0, "layer_end": 4, "num_layers": 4, "tp": 1}
HEAD = {"stage": 0, "layer_start": 0, "layer_end": 2, "num_layers": 4, "tp": 1}
TAIL = {"stage": 1, "layer_start": 2, "layer_end": 4, "num_layers": 4, "tp": 1}
GENERATION = {
    "prompt_tokens": len(PROMPT),
    "max_new_tokens": NEW,
    "sampling": {"temperature": 0.0, "seed": 0},
}


def frame(session: str, pos: int, ids: list[int]) -> bytes:
    return encode_frame(
        ActivationFrame(session, pos, "input_ids", torch.tensor(ids, dtype=torch.int64))
    )


def pub(sk: bytes) -> str:
    return public_key(sk).hex()


class Wire:
    """A test-side connection under one key; unsolicited messages queue in ``inbox``."""

    def __init__(self, peer: JobPeer, sk: bytes, inbox: asyncio.Queue[Message]) -> None:
        self.peer, self.sk, self.inbox = peer, sk, inbox
        self.key = pub(sk)
        self.last_re: str | None = None

    @classmethod
    async def open(cls, url: str, sk: bytes | None = None) -> Wire:
        sk = sk or generate_secret_key()
        inbox: asyncio.Queue[Message] = asyncio.Queue()

        async def on_message(_: JobPeer, msg: Message, __: bytes | None) -> None:
            inbox.put_nowait(msg)

        return cls(await open_peer(url, sk, on_message=on_message), sk, inbox)

    async def refused(self, msg_type: str, body: dict[str, Any], **kw: Any) -> int:
        """Send a request that must be answered sys.error; returns the code."""
        with pytest.raises(RemoteJobError) as exc:
            await self.peer.request(msg_type, body, timeout=20, **kw)
        return exc.value.code

    async def raw_refused(self, msg_type: str, body: dict[str, Any]) -> int:
        """Send an envelope our own sender would refuse to build; returns the sys.error code."""
        msg_id = "raw-" + os.urandom(4).hex()
        text = json.dumps({"v": 1, "type": msg_type, "id": msg_id, "body": body})
        async with self.peer._write_lock:
            await self.peer.ws.send(text)
        while True:
            err = await self.next("sys.error")
            if self.last_re in (None, msg_id):  # the node may not trust an invalid id
                return int(err["code"])

    async def next(self, msg_type: str, timeout: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.inbox.get()
                self.last_re = msg.re
                if msg.type == msg_type:
                    return msg.body_dict

    async def take_job(self, job: str, cid: str, shard: dict[str, Any]) -> None:
        reply, _ = await self.peer.request(
            "job.offer", {"job": job, "model": cid, "shard": shard, "max_tokens": 64}
        )
        assert reply.type == "job.accept"
        await self.peer.request("job.assign", {"job": job, "model": cid, "shard": shard})

    async def open_routed(
        self,
        job: str,
        session: str,
        shard: dict[str, Any],
        *,
        prev: str,
        next_node: str,
        next_endpoint: str,
        client: str,
        generation: dict[str, Any] | None = None,
    ) -> None:
        route = {
            "prev": prev,
            "next": {"node": next_node, "endpoint": next_endpoint},
            "client": client,
            "generation": generation or GENERATION,
        }
        body = {"job": job, "session": session, "shard": shard, "max_tokens": 64, "route": route}
        reply, _ = await self.peer.request("stage.open", body)
        assert reply.type == "stage.ready"

    async def close(self) -> None:
        await self.peer.close()


async def provider(tmp: Path, name: str, path: Path, cid: str, nodes: list[Node]) -> Node:
    node = Node(
        node_config(
            tmp,
            name,
            roles=["provider"],
            sandbox=SANDBOX,
            models=[{"cid": cid, "path": str(path)}],
        )
    )
    await node.start()
    nodes.append(node)
    return node


def expected_sha(salt: bytes, ids: list[int]) -> str:
    return hashlib.sha256(salt + b"".join(t.to_bytes(4, "big") for t in ids)).hexdigest()


async def collect(w: Wire, session: str, client_sk: bytes, first: int) -> dict[str, Any]:
    """stage.token messages of ``session`` until done: in order, each sealed to the client."""
    ids: list[int] = []
    while True:
        b = await w.next("stage.token")
        if b["session"] != session:
            continue
        assert b["index"] == first + len(ids)
        plain = open_json(b["tokens"], client_sk, sender=None)
        assert len(plain["ids"]) == 1
        ids.extend(plain["ids"])
        if b["done"]:
            assert first + len(ids) == b["count"]
            return {**b, "streamed": ids}


async def test_routed_single_stage_inputs_tokens_and_replay(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, model, cid = tiny_model
    want = hf_greedy(model, PROMPT, NEW)
    prov = await provider(tmp_path, "p", path, cid, no_nodes)
    me = prov.pubkey
    client_sk = generate_secret_key()
    client = pub(client_sk)
    drv, other, stranger = [await Wire.open(prov.endpoint) for _ in range(3)]
    try:
        await drv.take_job("j-00000001", cid, WHOLE)
        ring = {"prev": me, "next_node": me, "next_endpoint": prov.endpoint, "client": client}
        await drv.open_routed("j-00000001", "s1", WHOLE, **ring)
        salt = os.urandom(32)

        def sealed(plain: dict[str, Any], sk: bytes = client_sk, to: str = me) -> dict[str, Any]:
            return seal_json({"salt": salt.hex(), **plain}, sk, to)

        good = sealed({"prompt_ids": PROMPT})
        # stage.forward into a routed session: only from route.prev (here the provider itself)
        fwd = {"session": "s1", "step": 0, "position": 0}
        for w in (drv, stranger):
            assert await w.refused("stage.forward", fwd, payload=frame("s1", 0, PROMPT)) == 4041
        # stage.inputs: the opener only, sealed by route.client to this provider, well formed
        assert await stranger.refused("stage.inputs", {"session": "s1", "inputs": good}) == 4041
        assert await drv.refused("stage.inputs", {"session": "s9", "inputs": good}) == 4041
        assert await stranger.refused("stage.close", {"session": "s1"}) == 4041  # not its opener
        bad_inputs = [
            (sealed({"prompt_ids": PROMPT}, sk=generate_secret_key()), 4003),  # not the client
            (sealed({"prompt_ids": PROMPT}, to=stranger.key), 4003),  # addressed to another key
            ({**good, "data": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, 4000),
            (sealed({"prompt_ids": PROMPT[:-1]}), 4000),  # length != generation.prompt_tokens
            (sealed({"prompt_ids": [*PROMPT[:-1], 97]}), 4000),  # id outside the vocabulary
            (sealed({"prompt_ids": PROMPT, "extra": 1}), 4000),  # not an InputsPlaintext
        ]
        for inputs, code in bad_inputs:
            assert await drv.refused("stage.inputs", {"session": "s1", "inputs": inputs}) == code
        both = {"session": "s1", "inputs": good, "replay": {"session": "s1", "generated": 0}}
        assert await drv.raw_refused("stage.inputs", both) == 4000  # schema oneOf
        assert await drv.raw_refused("stage.inputs", {"session": "s1"}) == 4000
        relayed = {"job": "j-00000001", "session": "s0", "shard": WHOLE, "max_tokens": 64}
        await drv.peer.request("stage.open", relayed)  # no route: the driver relays each step
        assert await drv.refused("stage.inputs", {"session": "s0", "inputs": good}) == 4090
        # none of the refusals started the session: the good inputs do
        reply, _ = await drv.peer.request("stage.inputs", {"session": "s1", "inputs": good})
        assert reply.type == "sys.ok"
        done = await collect(drv, "s1", client_sk, 0)
        assert done["streamed"] == want  # the outside oracle: transformers greedy
        assert (done["finish"], done["count"]) == ("length", NEW)
        assert done["output_sha256"] == expected_sha(salt, want)
        assert open_json(done["output"], client_sk, sender=me)["ids"] == want
        assert await drv.refused("stage.inputs", {"session": "s1", "inputs": good}) == 4090

        # replay from the old session (spec/job.md §Failure and replay, stage 0 survived)
        await drv.open_routed("j-00000001", "s2", WHOLE, **ring)
        too_many = {"session": "s2", "replay": {"session": "s1", "generated": NEW + 1}}
        assert await drv.refused("stage.inputs", too_many) == 4090
        unknown = {"session": "s2", "replay": {"session": "s7", "generated": 1}}
        assert await drv.refused("stage.inputs", unknown) == 4090
        # another driver may not take the history of a session it did not open
        await other.take_job("j-00000002", cid, WHOLE)
        await other.open_routed("j-00000002", "s3", WHOLE, **ring)
        theft = {"session": "s3", "replay": {"session": "s1", "generated": 2}}
        assert await other.refused("stage.inputs", theft) == 4090
        # nor may the driver hand one client's history to a session for another client
        await drv.open_routed("j-00000001", "s4", WHOLE, **{**ring, "client": stranger.key})
        swap = {"session": "s4", "replay": {"session": "s1", "generated": 2}}
        assert await drv.refused("stage.inputs", swap) == 4090
        reply, _ = await drv.peer.request(
            "stage.inputs", {"session": "s2", "replay": {"session": "s1", "generated": 3}}
        )
        assert reply.type == "sys.ok"
        again = await collect(drv, "s2", client_sk, 3)
        assert again["streamed"] == want[3:]
        assert open_json(again["output"], client_sk, sender=me)["ids"] == want
        assert again["output_sha256"] == expected_sha(salt, want)

        # stop_ids end with finish "stop", eos_ids with "eos", the token itself included
        i = max(i for i in range(NEW) if want[i] not in want[:i])
        for n, (field, finish) in enumerate((("stop_ids", "stop"), ("eos_ids", "eos"))):
            sid = f"e{n}"
            gen = {**GENERATION, field: [want[i]]}
            await drv.open_routed("j-00000001", sid, WHOLE, **ring, generation=gen)
            await drv.peer.request("stage.inputs", {"session": sid, "inputs": good})
            end = await collect(drv, sid, client_sk, 0)
            assert end["streamed"] == want[: i + 1]
            assert (end["finish"], end["count"]) == (finish, i + 1)
            assert end["output_sha256"] == expected_sha(salt, want[: i + 1])
    finally:
        for w in (drv, other, stranger):
            await w.close()


async def test_routed_ring_prev_feedback_and_next_hop_identity(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    """The test is stage 0's ``prev`` (and its driver); a second node is its ``next``."""
    path, model, cid = tiny_model
    want = hf_greedy(model, PROMPT, 1)
    p = await provider(tmp_path, "p", path, cid, no_nodes)
    q = await provider(tmp_path, "q", path, cid, no_nodes)
    client_sk = generate_secret_key()
    t, tq = await Wire.open(p.endpoint), await Wire.open(q.endpoint)
    stranger = await Wire.open(p.endpoint)
    try:
        await t.take_job("j-00000010", cid, HEAD)
        await tq.take_job("j-00000010", cid, TAIL)
        to_q = {"next_node": q.pubkey, "next_endpoint": q.endpoint, "client": pub(client_sk)}
        await t.open_routed("j-00000010", "r1", HEAD, prev=t.key, **to_q)
        # the last stage on q sends its token to p, where r1 takes feedback from t only
        await tq.open_routed(
            "j-00000010",
            "r1",
            TAIL,
            prev=p.pubkey,
            next_node=p.pubkey,
            next_endpoint=p.endpoint,
            client=pub(client_sk),
        )
        assert await tq.refused("stage.inputs", {"session": "r1", "replay": {"session": "r1", "generated": 0}}) == 4090  # fmt: skip
        fwd = {"session": "r1", "step": 1, "position": len(PROMPT)}
        early = frame("r1", len(PROMPT), [want[0]])
        assert await t.refused("stage.forward", fwd, payload=early) == 4090  # before its inputs
        inputs = seal_json({"prompt_ids": PROMPT}, client_sk, p.pubkey)
        await t.peer.request("stage.inputs", {"session": "r1", "inputs": inputs})
        # q ran step 1 of the ring, sampled, and was refused by p (4041): q blames p
        failed = await tq.next("stage.failed")
        assert (failed["session"], failed["node"], failed["code"]) == ("r1", p.pubkey, 4041)
        # feedback from a connection that is not route.prev: 4041; a two-token frame: 4000
        one = frame("r1", len(PROMPT), [want[0]])
        assert await stranger.refused("stage.forward", fwd, payload=one) == 4041
        two = frame("r1", len(PROMPT), [want[0], want[0]])
        assert await t.refused("stage.forward", fwd, payload=two) == 4000
        # the right feedback from prev: p records it and reports it sealed to the client
        await t.peer.send("stage.forward", fwd, payload=one)
        tok = await t.next("stage.token")
        assert (tok["session"], tok["index"], tok["done"]) == ("r1", 0, False)
        assert open_json(tok["tokens"], client_sk, sender=p.pubkey)["ids"] == [want[0]]
        # p forwarded step 1 to q; q's r1 had failed, so nothing further comes back
        # a next hop that answers as another key than route.next.node: stage.failed, 5001
        impostor = pub(generate_secret_key())
        await t.open_routed(
            "j-00000010",
            "r2",
            HEAD,
            prev=t.key,
            next_node=impostor,
            next_endpoint=q.endpoint,
            client=pub(client_sk),
        )
        inputs = seal_json({"prompt_ids": PROMPT}, client_sk, p.pubkey)
        await t.peer.request("stage.inputs", {"session": "r2", "inputs": inputs})
        failed = await t.next("stage.failed")
        assert (failed["session"], failed["node"], failed["code"]) == ("r2", impostor, 5001)
        assert p.provider is not None
        assert p.provider.router is not None  # one link to q, shared by r1 and r2
        assert list(p.provider.router.links) == [q.endpoint]
        # a next hop may stop only the sessions it is the next hop of: q, over the link p
        # opened to it, names p's single-stage session v1 (whose next is p) in a sys.error
        me = {"next_node": p.pubkey, "next_endpoint": p.endpoint, "client": pub(client_sk)}
        await t.open_routed("j-00000010", "v1", WHOLE, prev=p.pubkey, **me)
        link = next(x for x in q.peers if x.peer_pubkey == p.pubkey)
        await link.send_error(4000, "hostile", session="v1")
        await asyncio.sleep(0.3)
        assert p.provider is not None
        assert not p.provider.sessions["v1"].failed
        inputs = seal_json({"prompt_ids": PROMPT}, client_sk, p.pubkey)
        await t.peer.request("stage.inputs", {"session": "v1", "inputs": inputs})
        done = await collect(t, "v1", client_sk, 0)
        assert done["streamed"] == hf_greedy(model, PROMPT, NEW)
    finally:
        for w in (t, tq, stranger):
            await w.close()


async def test_aggregator_inputs_rules_and_timeout(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, _, cid = tiny_model
    prov = await provider(tmp_path, "p", path, cid, no_nodes)
    agg = Node(
        node_config(
            tmp_path,
            "agg",
            roles=["aggregator"],
            peers=[prov.endpoint],
            models=[{"cid": cid, "path": str(path)}],
            aggregator={"stage_timeout_s": 2, "max_reroutes": 1},
        )
    )
    await agg.start()
    no_nodes.append(agg)
    owner, thief = await Wire.open(agg.endpoint), await Wire.open(agg.endpoint)
    try:
        submit = {
            "job": "j-00000020",
            "model": cid,
            "prompt_tokens": len(PROMPT),
            "params": {"max_new_tokens": NEW, "sampling": {"temperature": 0.0, "seed": 0}},
            "redundancy": 1,
            "stream": True,
        }
        reply, _ = await owner.peer.request("job.submit", submit)
        assert reply.type == "job.accept"
        stage0 = reply.body_dict["plan"]["replicas"][0][0]["provider"]
        assert stage0 == prov.pubkey
        plain = {"prompt_ids": PROMPT}
        wrong_to = {"job": "j-00000020", "replica": 0, "inputs": seal_json(plain, owner.sk, agg.pubkey)}  # fmt: skip
        assert await owner.refused("job.inputs", wrong_to) == 4003
        theirs = {"job": "j-00000020", "replica": 0, "inputs": seal_json(plain, thief.sk, stage0)}
        assert await thief.refused("job.inputs", theirs) == 4003  # someone else's job
        relayed = {"job": "j-00000020", "replica": 0, "inputs": seal_json(plain, thief.sk, stage0)}
        assert await owner.refused("job.inputs", relayed) == 4003  # not sealed by the owner
        forged = {**theirs, "inputs": {**theirs["inputs"], "from": owner.key}}
        assert await thief.refused("job.inputs", forged) == 4003
        unknown = {**theirs, "job": "j-00000099"}
        assert await thief.refused("job.inputs", unknown) == 4040
        good = {"job": "j-00000020", "replica": 0, "inputs": seal_json(plain, owner.sk, stage0)}
        assert await owner.refused("job.inputs", {**good, "replica": 1}) == 4090  # no replica 1
        # the owner never sends valid inputs: the job fails with 4300 after stage_timeout
        result = await owner.next("job.result", timeout=30)
        assert result["state"] == "failed"
        assert result["error"]["code"] == 4300
        assert await owner.refused("job.inputs", good) == 4090  # too late: nothing waits
        assert agg.store.get_job("j-00000020", "aggregator").error_code == 4300
        # and a full job through the same aggregator still works
        out = await submit_job(
            agg.endpoint, generate_secret_key(), model=cid, prompt_ids=PROMPT, max_new_tokens=2
        )
        assert out.state == "completed", out.error
    finally:
        await owner.close()
        await thief.close()
