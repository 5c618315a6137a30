"""``run_demo``: the scenario of :mod:`.scenario` driven end to end, always cleaned up.

Theory of operation: :func:`run_demo` owns the :class:`Swarm`; whatever happens inside
:func:`_scenario` (success, a failed step, cancellation by Ctrl-C or SIGTERM) the ``finally``
clause stops every process the demo started and records in the report how many were left
(the test asserts zero). The report is plain JSON-ready data; ``ok`` is true only when the job
completed, both replicas agreed, the output equals the transformers oracle, and — when a fault
was injected — the aggregator rerouted around the killed provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

from infernet_ref.node.demo.scenario import (
    BOS,
    DemoOptions,
    DemoState,
    decode_bytes,
    device_memory,
    free_ports,
    model_cid,
    new_root,
    reference_tokens,
    remove_root,
    write_configs,
)
from infernet_ref.node.demo.swarm import NodeProc, Swarm, SwarmError
from infernet_ref.node.sandbox.docker import remove_group

STREAM_EVERY = 8  # print the streamed text every this many tokens
FETCH_EVENTS = {"provider.model_fetched", "provider.model_fetch_failed"}


async def run_demo(opts: DemoOptions) -> dict[str, Any]:
    """Run the whole demo; returns the report (see module docstring)."""
    root = new_root(opts)
    state = DemoState(opts, root)
    swarm = Swarm(root)
    state.report.update(ok=False, workdir=str(root))
    try:
        await _scenario(state, swarm)
    except asyncio.CancelledError:
        state.report["error"] = "interrupted"
        raise
    except Exception as exc:
        state.report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        await asyncio.shield(_cleanup(state, swarm))
    return state.report


async def _cleanup(state: DemoState, swarm: Swarm) -> None:
    state.step("cleanup", nodes=len(swarm.nodes))
    await swarm.close()
    state.report["cleanup"] = {
        "processes_left": len(swarm.leftovers()),
        "containers_left": await asyncio.to_thread(remove_group, swarm.group),
        "workdir_kept": state.opts.keep or state.opts.workdir is not None,
    }
    if state.opts.keep or state.opts.workdir is not None:
        (state.root / "report.json").write_text(json.dumps(state.report, indent=1, default=str))
    remove_root(state.root, state.opts)


async def _scenario(state: DemoState, swarm: Swarm) -> None:
    opts, report = state.opts, state.report
    if not (opts.model_dir / "config.json").exists():
        raise SwarmError(f"no model at {opts.model_dir} (run scripts/train_demo_model.py)")
    prompt_ids = [BOS, *opts.prompt.encode("utf-8")]
    report["prompt"] = opts.prompt
    state.step("computing the oracle in the background", oracle="transformers, greedy")
    oracle = asyncio.ensure_future(
        asyncio.to_thread(reference_tokens, opts.model_dir, prompt_ids, opts.max_new_tokens)
    )
    try:
        await _start_bootstrap(state, swarm)
        cid = report["model"]["cid"]
        nodes = await _start_swarm(state, swarm, cid, len(prompt_ids))
        expected = await oracle
    finally:
        if not oracle.done():
            oracle.cancel()
    report["expected"] = {"ids": expected, "text": decode_bytes(expected)}
    outcome = await _job(state, swarm, nodes, cid, prompt_ids)
    _summarize(state, swarm, nodes, outcome, expected)


async def _start_bootstrap(state: DemoState, swarm: Swarm) -> NodeProc:
    (ws,), (dht,) = free_ports(1), free_ports(1, socket.SOCK_DGRAM)
    cfg: dict[str, Any] = {
        "roles": ["client"],
        "listen": {"ws": f"127.0.0.1:{ws}", "dht": f"127.0.0.1:{dht}"},
        "log": {"level": "info", "file": "node.log.jsonl"},
    }
    cid, size = await asyncio.to_thread(model_cid, state.opts.model_dir)
    cfg["models"] = [{"cid": cid, "path": str(state.opts.model_dir)}]
    boot = swarm.add("boot", "bootstrap", cfg)
    boot.extra["dht"] = dht
    state.report["model"] = {"cid": cid, "bytes": size, "path": str(state.opts.model_dir)}
    await swarm.start_all([boot], state.opts.start_timeout)
    published = await _wait_events(boot, {"node.models_published"}, 1, state.opts.start_timeout)
    if not published:
        raise SwarmError(f"the bootstrap node did not publish the model:\n{swarm.log_tail(boot)}")
    state.step("bootstrap node up, model published (content layer + DHT)", cid=cid, bytes=size)
    return boot


async def _start_swarm(
    state: DemoState, swarm: Swarm, cid: str, prompt_tokens: int
) -> dict[str, NodeProc]:
    mem = device_memory(state.opts.model_dir, prompt_tokens, state.opts.max_new_tokens)
    nodes = write_configs(state, swarm, cid, mem)
    await swarm.start_all(list(nodes.values()), state.opts.start_timeout)
    state.report["nodes"] = {
        name: {"role": n.role, "pubkey": n.pubkey, "endpoint": n.endpoint, **n.extra}
        for name, n in swarm.nodes.items()
    }
    state.step("swarm up", providers=5, aggregator=nodes["agg"].endpoint)
    providers = [n for n in nodes.values() if n.role == "provider"]
    fetched = await asyncio.gather(
        *(_wait_events(n, FETCH_EVENTS, 1, state.opts.start_timeout) for n in providers)
    )
    report = {}
    for node, events in zip(providers, fetched, strict=True):
        ev = events[0] if events else {"event": "timeout"}
        if ev["event"] != "provider.model_fetched":
            raise SwarmError(f"{node.name} could not fetch its layers: {ev}")
        report[node.name] = {k: ev[k] for k in ("layers", "tensor_bytes", "seconds") if k in ev}
    state.report["fetched"] = report
    sizes = {name: r.get("tensor_bytes") for name, r in report.items()}
    state.step("providers fetched only their layers' tensors by CID", tensor_bytes=sizes)
    return nodes


async def _wait_events(
    node: NodeProc, names: set[str], count: int, timeout: float
) -> list[dict[str, Any]]:
    """Poll a node's JSON log until ``count`` events named ``names`` appeared (or timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = _agg_events(node, names)
        if len(found) >= count or loop.time() > deadline or not node.running:
            return found
        await asyncio.sleep(0.5)


async def _job(
    state: DemoState, swarm: Swarm, nodes: dict[str, NodeProc], cid: str, prompt_ids: list[int]
) -> Any:
    from infernet_ref.node.store import Store  # noqa: PLC0415

    opts = state.opts
    by_key = {n.pubkey: n for n in swarm.nodes.values()}
    fault: dict[str, Any] = {}
    state.report["fault"] = fault
    streamed: list[int] = []

    async def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "accepted":
            state.report["plan"] = data.get("plan")
            state.step("job accepted", plan=_plan_text(data.get("plan"), by_key))
        elif kind == "tokens":
            streamed.extend(data["ids"])
            if opts.on_step is not None and (
                data["done"] % STREAM_EVERY == 0 or data["done"] == opts.kill_after_tokens
            ):
                opts.on_step(
                    f"{'':>11} streamed {data['done']:3d} tokens: {decode_bytes(streamed)!r}"
                )
            if opts.kill and not fault and data["done"] >= opts.kill_after_tokens:
                victim = _victim(state.report.get("plan"), by_key)
                swarm.kill(victim)
                fault.update(killed=victim.name, pubkey=victim.pubkey, after_tokens=data["done"])
                state.step("killed provider mid-generation", node=victim.name, tokens=data["done"])
        elif kind == "progress":
            state.step("progress", state=data.get("state"), note=data.get("note"))

    state.step("client submits the job", redundancy=opts.redundancy, prompt=opts.prompt)
    client_dir = state.root / "client"
    client_dir.mkdir(exist_ok=True)
    store = Store(client_dir / "state.sqlite3")  # the client role's own job record
    try:
        outcome = await _submit(
            state, nodes["agg"], cid, prompt_ids, store=store, on_event=on_event
        )
        record = store.find_job(outcome.job, "client")
        state.report["client_record"] = None if record is None else str(record.state.value)
    finally:
        store.close()
    return outcome


async def _submit(
    state: DemoState, agg: NodeProc, cid: str, prompt_ids: list[int], *, store: Any, on_event: Any
) -> Any:
    from infernet_ref.node.client import submit_job  # noqa: PLC0415
    from infernet_ref.nostr import generate_secret_key  # noqa: PLC0415

    opts = state.opts
    return await submit_job(
        agg.endpoint,
        generate_secret_key(),
        model=cid,
        prompt_ids=prompt_ids,
        max_new_tokens=opts.max_new_tokens,
        temperature=0.0,
        redundancy=opts.redundancy,
        stream=True,
        timeout=opts.job_timeout,
        store=store,
        on_event=on_event,
    )


def _victim(plan: Any, by_key: dict[str, NodeProc]) -> NodeProc:
    """Replica 0's tensor-parallel stage (else its last stage): the provider to kill."""
    if not plan or not plan.get("replicas"):
        raise SwarmError("no plan to pick a victim from")
    stages = plan["replicas"][0]
    target = next((s for s in stages if s["shard"]["tp"] > 1), stages[-1])
    return by_key[target["provider"]]


def _plan_text(plan: Any, by_key: dict[str, NodeProc]) -> str:
    if not plan:
        return "?"
    reps = []
    for rep in plan["replicas"]:
        parts = [
            f"{by_key[s['provider']].name if s['provider'] in by_key else s['provider'][:8]}"
            f"[{s['shard']['layer_start']},{s['shard']['layer_end']}) tp={s['shard']['tp']}"
            for s in rep
        ]
        reps.append(" -> ".join(parts))
    return f"{plan['strategy']}: " + " | ".join(reps)


def _agg_events(node: NodeProc, names: set[str]) -> list[dict[str, Any]]:
    """Events named ``names`` from a node's JSON-lines log."""
    path = node.data_dir / "node.log.jsonl"
    out = []
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if ev.get("event") in names:
                    out.append(ev)
    return out


def _summarize(
    state: DemoState, swarm: Swarm, nodes: dict[str, NodeProc], outcome: Any, expected: list[int]
) -> None:
    report, opts = state.report, state.opts
    by_key = {n.pubkey: n.name for n in swarm.nodes.values()}
    out = outcome.to_dict()
    report["job"] = out
    report["output"] = {"ids": outcome.tokens, "text": decode_bytes(outcome.tokens)}
    report["plan_text"] = _plan_text(outcome.plan, {k: swarm.nodes[v] for k, v in by_key.items()})
    report["providers_used"] = sorted(by_key.get(k, k[:12]) for k in outcome.providers)
    events = _agg_events(nodes["agg"], {"driver.stage_failed", "driver.reroute"})
    report["recovery"] = [
        {
            k: (by_key.get(v, v) if k in ("to", "provider") else v)
            for k, v in ev.items()
            if k not in ("ts", "level", "node")
        }
        for ev in events
    ]
    report["dht_joined"] = sorted(
        name
        for name, n in swarm.nodes.items()
        if name != "boot" and _agg_events(n, {"node.dht_joined"})
    )
    verification = outcome.verification or {}
    checks = {
        "completed": outcome.state == "completed",
        "hash_ok": outcome.hash_ok is True,
        "replicas_agree": verification.get("verdict") == "agree" or opts.redundancy == 1,
        "matches_oracle": outcome.tokens == expected,
        "recovered": (not opts.kill) or (bool(report["fault"]) and outcome.reroutes >= 1),
    }
    report["checks"] = checks
    report["ok"] = all(checks.values())
    state.step(
        "job finished",
        state=outcome.state,
        reroutes=outcome.reroutes,
        verdict=verification.get("verdict"),
        ok=report["ok"],
    )


__all__ = ["DemoOptions", "run_demo"]
