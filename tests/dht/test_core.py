"""The sans-I/O core (spec/dht.md): proofs, amplification, hostile input, tokens, leave, put/get."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.dht import fastcbor, wire
from infernet_ref.dht.protocol import DHTConfig, DHTCore
from infernet_ref.dht.records import content_provider_key
from infernet_ref.dht.wire import ErrorCode, Kind, Op

from .helpers import CID, NOW, Net, content_record, joined_net

T = bytes(8)


def _query(op: str, body: dict[str, object], t: bytes = T) -> bytes:
    return wire.encode(t, Kind.QUERY, op, body)


def _reply(core: DHTCore) -> wire.Datagram:
    (out,) = core.datagrams_to_send()[:1]
    return wire.decode(out[0])


def test_challenge_proves_key_and_admits_both_ways() -> None:
    net = Net()
    _a_addr, a = net.add()
    b_addr, b = net.add()
    op = a.bootstrap([b_addr], net.now)
    net.run(a, op)
    assert b.node_id in a.table
    assert a.node_id in b.table  # b challenged a back before admitting it
    assert a.proven_id(b_addr) == b.node_id


def test_forged_proof_is_not_admitted() -> None:
    net = Net()
    _a_addr, a = net.add()
    req = a.query(("10.9.9.9", 1), Op.PING, {}, net.now)
    assert req is not None
    assert req.nonce is not None
    liar = DHTCore(bytes([9]) * 32, now=NOW, random_bytes=random.Random(1).randbytes)
    victim_id = bytes(32)  # claims an ID it has no key for
    sig = liar.prover.sign(bytes(32), bytes(32))
    body = {"id": victim_id, "pk": liar.prover.public_key, "sig": sig, "tk": b"12345678"}
    a.receive_datagram(wire.encode(req.t, Kind.RESPONSE, Op.PING, body), ("10.9.9.9", 1), net.now)
    assert victim_id not in a.table
    assert liar.node_id not in a.table
    assert a.proven_id(("10.9.9.9", 1)) is None


def test_response_from_wrong_address_is_ignored() -> None:
    net = Net()
    _, a = net.add()
    b_addr, b = net.add()
    req = a.query(b_addr, Op.PING, {}, net.now)
    assert req is not None
    a.datagrams_to_send()
    body = {"id": b.node_id, "pk": b.prover.public_key, "sig": bytes(64)}
    a.receive_datagram(
        wire.encode(req.t, Kind.RESPONSE, Op.PING, body), ("10.6.6.6", 4000), net.now
    )
    assert req.t in a.pending  # still waiting for the real b


def test_unverified_source_gets_no_amplification() -> None:
    net = joined_net(40)
    addr, core = next(iter(net.cores.items()))
    to = [wire.pack_ip(addr[0]), addr[1]]
    q = _query(Op.FIND_NODE, {"id": bytes(32), "target": bytes(32), "c": bytes(16), "to": to})
    core.receive_datagram(q, ("192.0.2.1", 7), net.now)
    out = [d for d, dst in core.datagrams_to_send() if dst == ("192.0.2.1", 7)]
    assert out
    assert all(len(d) <= 3 * len(q) for d in out)
    # Padded, the same query earns the full answer.
    padded = _query(
        Op.FIND_NODE,
        {"id": bytes(32), "target": bytes(32), "c": bytes(16), "to": to, "pad": bytes(400)},
        t=b"\x01" * 8,
    )
    core.receive_datagram(padded, ("192.0.2.1", 7), net.now)
    (resp,) = [wire.decode(d) for d, dst in core.datagrams_to_send() if dst == ("192.0.2.1", 7)]
    assert len(resp.body["nodes"]) == 20
    dist = [int.from_bytes(n[0], "big") for n in resp.body["nodes"]]
    assert dist == sorted(dist)  # target 0: XOR distance is the ID itself


def test_store_needs_token_for_this_address() -> None:
    net = Net()
    _a_addr, a = net.add()
    key, ev = content_record(bytes([5]) * 32)
    a.receive_datagram(
        _query(Op.STORE, {"id": bytes(32), "key": key, "ev": ev, "tk": b"\x00" * 8}),
        ("10.1.1.1", 5),
        net.now,
    )
    assert _reply(a).body["code"] == ErrorCode.BAD_TOKEN
    tk = a.tokens.issue(("10.1.1.2", 5), net.now)
    a.receive_datagram(
        _query(Op.STORE, {"id": bytes(32), "key": key, "ev": ev, "tk": tk}),
        ("10.1.1.1", 5),
        net.now,
    )
    assert _reply(a).body["code"] == ErrorCode.BAD_TOKEN  # token of another address
    a.receive_datagram(
        _query(Op.STORE, {"id": bytes(32), "key": key, "ev": dict(ev, content="x"), "tk": tk}),
        ("10.1.1.2", 5),
        net.now,
    )
    assert _reply(a).body["code"] == ErrorCode.INVALID_VALUE
    a.receive_datagram(
        _query(Op.STORE, {"id": bytes(32), "key": key, "ev": ev, "tk": tk}),
        ("10.1.1.2", 5),
        net.now,
    )
    assert _reply(a).body["stored"] == 1
    assert a.store.get(key, net.now) == [ev]


def test_put_then_get_across_the_network() -> None:
    net = joined_net(60, seed=2)
    cores = list(net.cores.values())
    key, ev = content_record(bytes([6]) * 32)
    put = net.run(cores[5], cores[5].put(key, ev, net.now))
    assert put.stored >= 15
    holders = sum(1 for c in cores if c.store.get(key, net.now))
    assert holders >= 15
    for reader in cores[30:40]:
        res = net.run(reader, reader.get(key, net.now))
        assert [v["id"] for v in res.values] == [ev["id"]]


def test_find_node_matches_brute_force() -> None:
    net = joined_net(80, seed=3)
    cores = list(net.cores.values())
    target = random.Random(4).randbytes(32)
    res = net.run(cores[10], cores[10].find_node(target, net.now))
    ids = sorted(
        (c.node_id for c in cores if c is not cores[10]),
        key=lambda n: int.from_bytes(n, "big") ^ int.from_bytes(target, "big"),
    )
    assert [nid for nid, _ in res.contacts] == ids[:20]


def test_dead_nodes_cost_adaptive_not_fixed_timeouts() -> None:
    net = joined_net(60, seed=5)
    addrs = list(net.cores)
    for a in addrs[1:25]:
        net.dropped.add(a)  # silently dead
    reader = net.cores[addrs[40]]
    start = net.now
    res = net.run(reader, reader.find_node(random.Random(1).randbytes(32), net.now))
    assert res.contacts
    # Every RTT here is 0, so each contact's RTO sits at the 50 ms floor: stalls free slots
    # long before the 4 s hard timeout.
    assert net.now - start < 2.0


def test_leave_removes_sender() -> None:
    net = joined_net(10)
    addrs = list(net.cores)
    leaver = net.cores[addrs[3]]
    holders = [c for c in net.cores.values() if leaver.node_id in c.table]
    assert holders
    leaver.leave(net.now)
    net.pump()
    assert all(leaver.node_id not in c.table for c in holders)


def test_forged_leave_is_refused() -> None:
    net = joined_net(5)
    addrs = list(net.cores)
    victim, target = net.cores[addrs[1]], net.cores[addrs[2]]
    assert victim.node_id in target.table
    body = {
        "id": victim.node_id,
        "pk": victim.prover.public_key,
        "ts": int(net.now),
        "sig": bytes(64),
    }
    target.receive_datagram(_query(Op.LEAVE, body), addrs[1], net.now)
    assert victim.node_id in target.table
    assert _reply(target).body["code"] == ErrorCode.INVALID_VALUE


def test_rate_limit_per_source() -> None:
    core = DHTCore(
        bytes([1]) * 32,
        now=NOW,
        random_bytes=random.Random(1).randbytes,
        config=DHTConfig(rate=10, burst=5),
    )
    for i in range(50):
        core.receive_datagram(
            _query(Op.PING, {"id": bytes(32)}, t=i.to_bytes(8, "big")), ("10.0.0.9", 1), NOW
        )
    replies = [d for d, dst in core.datagrams_to_send() if wire.decode(d).y == Kind.RESPONSE]
    assert len(replies) == 5
    assert core.limiter.dropped == 45


def test_malformed_queries_get_error_and_node_keeps_answering() -> None:
    net = joined_net(3)
    core = next(iter(net.cores.values()))
    src = ("10.7.7.7", 9)
    core.receive_datagram(_query("BOGUS", {"id": bytes(32)}), src, net.now)
    assert _reply(core).body["code"] == ErrorCode.UNKNOWN_OP
    core.receive_datagram(_query(Op.FIND_NODE, {"id": bytes(32)}), src, net.now)
    assert _reply(core).body["code"] == ErrorCode.PROTOCOL
    for junk in (b"", b"\xff" * 10, b"\xa0", bytes(5000)):
        core.receive_datagram(junk, src, net.now)
    assert core.datagrams_to_send() == []  # unreadable: silence
    core.receive_datagram(_query(Op.PING, {"id": bytes(32)}), src, net.now)
    assert _reply(core).y == Kind.RESPONSE


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.binary(max_size=200)
        | st.builds(
            lambda op, y, body: fastcbor.encode(
                {"v": 1, "t": bytes(8), "y": y, "op": op, "body": body}
            ),
            st.sampled_from([*wire.OPS, "X"]),
            st.sampled_from(["q", "r", "e", "z"]),
            st.dictionaries(
                st.sampled_from(
                    ["id", "c", "tk", "target", "key", "nodes", "values", "ev", "o", "code"]
                ),
                st.binary(max_size=40)
                | st.integers(-5, 70000)
                | st.lists(st.binary(max_size=33), max_size=3),
                max_size=5,
            ),
        ),
        max_size=20,
    )
)
def test_hostile_datagrams_never_raise_and_state_stays_bounded(datagrams: list[bytes]) -> None:
    core = DHTCore(bytes([2]) * 32, now=NOW, random_bytes=random.Random(3).randbytes)
    for i, d in enumerate(datagrams):
        core.receive_datagram(d, (f"10.{i % 3}.0.1", 1000 + i), NOW + i * 0.01)
        core.handle_timer(NOW + i * 0.01)
    for d, _ in core.datagrams_to_send():
        assert len(d) <= wire.MAX_DATAGRAM
    assert len(core.pending) <= core.config.max_admissions
    assert len(core.table) == 0  # nobody proved a key


def test_values_expire_and_republish() -> None:
    net = joined_net(30, seed=6, config=DHTConfig(republish_interval=600, maintenance_tick=60))
    cores = list(net.cores.values())
    key, ev = content_record(bytes([8]) * 32, ttl=3000)
    net.run(cores[0], cores[0].put(key, ev, net.now))
    for c in cores:  # wipe every replica; the owner's republish must bring them back
        c.store = type(c.store)()
    net.advance(700)
    assert sum(1 for c in cores if c.store.get(key, net.now)) >= 10
    net.advance(3000)
    assert all(not c.store.get(key, net.now) for c in cores)
    assert not cores[0].owned


def test_content_key_of_helper() -> None:
    assert content_provider_key(CID) == content_record(bytes([1]) * 32)[0]


def test_health_pings_drop_dead_contacts_and_refresh_runs() -> None:
    net = joined_net(
        20, seed=7, config=DHTConfig(health_interval=60, maintenance_tick=10, refresh_interval=120)
    )
    addrs = list(net.cores)
    watcher = net.cores[addrs[0]]
    dead_addr = next(a for a in addrs[1:] if net.cores[a].node_id in watcher.table)
    dead_id = net.cores[dead_addr].node_id
    alive_id = next(c.node_id for c in watcher.table.contacts() if c.node_id != dead_id)
    first_seen = watcher.table.get(alive_id).first_seen  # type: ignore[union-attr]
    net.dropped.add(dead_addr)
    sent_before = watcher.stats.sent
    for _ in range(40):
        net.advance(10)
    assert dead_id not in watcher.table
    alive = watcher.table.get(alive_id)
    assert alive is not None
    assert alive.uptime(net.now) >= 400
    assert alive.first_seen == first_seen
    assert watcher.stats.sent - sent_before > 20  # liveness pings and refresh lookups went out


def _make_liar(core: DHTCore, liars: list[DHTCore], addr_of: dict[bytes, tuple[str, int]]) -> None:
    """A node that proves its key but answers every lookup with other liars and forged values."""
    from infernet_ref.dht.proof import challenge_digest

    def receive(data: bytes, addr: tuple[str, int], now: float) -> None:
        dg = wire.decode(data)
        if dg.y != Kind.QUERY:
            return
        res: dict[str, object] = {"id": core.node_id, "tk": core.tokens.issue(addr, now)}
        if "c" in dg.body:
            res["pk"] = core.prover.public_key
            res["sig"] = core.prover.sign(
                challenge_digest(dg.body["c"], dg.body["id"], *dg.body["to"]), bytes(32)
            )
        if dg.op in (Op.FIND_NODE, Op.FIND_VALUE):
            t = int.from_bytes(dg.body.get("target") or dg.body["key"], "big")
            near = sorted(
                (lc for lc in liars if lc is not core),
                key=lambda lc: int.from_bytes(lc.node_id, "big") ^ t,
            )
            res["nodes"] = [
                [lc.node_id, wire.pack_ip(addr_of[lc.node_id][0]), 4000] for lc in near[:20]
            ]
        if dg.op == Op.FIND_VALUE:
            _, forged = content_record(bytes([66]) * 32)
            res["values"] = [dict(forged, content="forged")]
        if dg.op == Op.STORE:
            res = {"id": core.node_id, "stored": 1}
        core.send_raw(wire.encode(dg.t, Kind.RESPONSE, dg.op, res), addr)

    core.receive_datagram = receive  # type: ignore[method-assign]


def test_disjoint_get_survives_lying_nodes() -> None:
    net = joined_net(50, seed=8)
    cores = list(net.cores.items())
    liars = [c for i, (_, c) in enumerate(cores) if i % 5 == 2]
    addr_of = {c.node_id: a for a, c in cores}
    for liar in liars:
        _make_liar(liar, liars, addr_of)
    honest = [c for _, c in cores if c not in liars]
    key, ev = content_record(bytes([12]) * 32)
    net.run(honest[0], honest[0].put(key, ev, net.now, paths=3))
    ok = 0
    for reader in honest[10:30]:
        res = net.run(reader, reader.get(key, net.now, paths=3))
        assert all(v["content"] != "forged" for v in res.values)
        ok += [v["id"] for v in res.values] == [ev["id"]]
    assert ok == 20


def test_timed_out_address_is_skipped_until_heard_from() -> None:
    """spec/dht.md §Timeouts: after a hard timeout, lookups skip the address for a while."""
    net = joined_net(30)
    (a_addr, a), (b_addr, b) = list(net.cores.items())[1:3]
    assert b.node_id in a.table
    net.dropped.add(b_addr)
    net.run(a, a.find_node(b.node_id, net.now))
    net.advance(a.config.hard_timeout + 1)
    assert a.presumed_dead(b_addr, net.now)
    for c in a.table.contacts():  # let the table offer b again, as a peer's answer would
        c.fails = 0
    start = len(net.log)
    net.run(a, a.find_node(b.node_id, net.now))
    assert not [1 for src, dst, _ in net.log[start:] if src == a_addr and dst == b_addr]
    net.dropped.discard(b_addr)
    net.run(b, b.find_node(a.node_id, net.now))  # b queries a: alive after all
    assert not a.presumed_dead(b_addr, net.now)
    assert not a.presumed_dead(b_addr, net.now + a.config.dead_ttl)


def test_lookup_seeds_from_failing_contacts_when_the_table_is_thin() -> None:
    """A node whose contacts all failed once (e.g. after a network blip) still starts lookups."""
    from infernet_ref.dht.storage import ValueStore

    net = joined_net(8)
    core = list(net.cores.values())[3]
    key, ev = content_record(bytes([6]) * 32)
    other = list(net.cores.values())[5]
    assert net.run(other, other.put(key, ev, net.now)).stored > 0
    core.store = ValueStore()  # no local replica: the value must come from the network
    for c in core.table.contacts():
        c.fails = 1
    assert core.table.closest(bytes(32)) == []
    res = net.run(core, core.get(key, net.now))
    assert res.queried > 0
    assert [v["id"] for v in res.values] == [ev["id"]]
