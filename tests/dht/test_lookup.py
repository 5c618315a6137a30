"""The lookup state machine (spec/dht.md §Lookups) on a simulated network, against brute force."""

from __future__ import annotations

import random

import pytest

from infernet_ref.dht.lookup import CandState, Lookup


def _network(n: int, seed: int) -> tuple[list[bytes], dict[bytes, tuple[str, int]]]:
    rng = random.Random(seed)
    ids = [rng.randbytes(32) for _ in range(n)]
    return ids, {nid: (f"10.0.{i // 250}.{i % 250}", 4000) for i, nid in enumerate(ids)}


def _closest(ids: list[bytes], target: bytes, k: int) -> list[bytes]:
    t = int.from_bytes(target, "big")
    return sorted(ids, key=lambda n: int.from_bytes(n, "big") ^ t)[:k]


def _drive(
    lk: Lookup,
    ids: list[bytes],
    addrs: dict[bytes, tuple[str, int]],
    dead: set[bytes],
    liars: set[bytes] | None = None,
) -> int:
    """Answer every query with the k nearest (an honest node's knowledge: all nodes)."""
    rounds = 0
    while not lk.done and rounds < 500:
        rounds += 1
        batch = lk.next_queries()
        if not batch and not lk.done:
            break
        for c in batch:
            if c.node_id in dead:
                lk.on_stall(c)
                lk.on_fail(c)
            elif liars and c.node_id in liars:
                lk.on_response(
                    c,
                    c.node_id,
                    [(x, addrs[x]) for x in _closest(sorted(liars), lk.target, 20)],
                    None,
                )
            else:
                # An honest node knows the live nodes and still lists a few dead ones.
                alive = [i for i in ids if i not in dead]
                known = _closest(alive, lk.target, 20) + _closest(sorted(dead), lk.target, 5)
                lk.on_response(c, c.node_id, [(x, addrs[x]) for x in known], b"tk")
    return rounds


@pytest.mark.parametrize("paths", [1, 3])
def test_lookup_finds_true_k_closest(paths: int) -> None:
    ids, addrs = _network(500, 1)
    own, target = ids[0], random.Random(9).randbytes(32)
    lk = Lookup(target, own_id=own, k=20, paths=paths)
    lk.seed([(x, addrs[x]) for x in random.Random(2).sample(ids[1:], 20)])
    _drive(lk, ids, addrs, set())
    assert lk.done
    want = _closest([i for i in ids if i != own], target, 20)
    assert [c.node_id for c in lk.result()] == want


def test_dead_nodes_are_skipped() -> None:
    ids, addrs = _network(300, 2)
    target = random.Random(1).randbytes(32)
    dead = set(random.Random(3).sample(ids[1:], 90))
    lk = Lookup(target, own_id=ids[0])
    lk.seed([(x, addrs[x]) for x in ids[1:40]])
    _drive(lk, ids, addrs, dead)
    want = _closest([i for i in ids[1:] if i not in dead], target, 20)
    assert [c.node_id for c in lk.result()] == want


def test_disjoint_paths_never_share_a_node() -> None:
    ids, addrs = _network(400, 3)
    lk = Lookup(random.Random(5).randbytes(32), own_id=ids[0], paths=3)
    lk.seed([(x, addrs[x]) for x in ids[1:31]])
    _drive(lk, ids, addrs, set())
    seen: dict[bytes, int] = {}
    for i, p in enumerate(lk.paths):
        for c in p.shortlist:
            assert seen.setdefault(c.node_id, i) == i


def test_disjoint_paths_survive_a_lying_path() -> None:
    """Liars return only each other; with d=3, the honest paths still reach the true closest."""
    ids, addrs = _network(400, 4)
    rng = random.Random(6)
    liars = set(rng.sample(ids[1:], 80))
    target = rng.randbytes(32)
    honest = [i for i in ids[1:] if i not in liars]
    lk = Lookup(target, own_id=ids[0], paths=3)
    lk.seed([(x, addrs[x]) for x in rng.sample(honest, 10) + rng.sample(sorted(liars), 5)])
    _drive(lk, ids, addrs, set(), liars)
    got = {c.node_id for c in lk.result()}
    assert got & set(_closest(honest, target, 20))


def test_wrong_proof_fails_candidate_and_stall_frees_slot() -> None:
    ids, addrs = _network(50, 5)
    lk = Lookup(ids[1], own_id=ids[0], alpha=1)
    lk.seed([(ids[2], addrs[ids[2]]), (ids[3], addrs[ids[3]])])
    (first,) = lk.next_queries()
    lk.on_response(first, b"\x00" * 32, [], None)  # proved another key
    assert first.state is CandState.FAILED
    (second,) = lk.next_queries()
    lk.on_stall(second)
    assert second.state is CandState.STALLED
    lk.on_response(second, second.node_id, [], None)  # a late answer still counts
    assert second.state is CandState.ANSWERED


def test_shortlist_is_capped_under_floods() -> None:
    ids, addrs = _network(50, 6)
    lk = Lookup(ids[1], own_id=ids[0], k=5)
    lk.seed([(ids[2], addrs[ids[2]])])
    (c,) = lk.next_queries()[:1]
    rng = random.Random(1)
    flood = [(rng.randbytes(32), (f"9.9.{i // 250}.{i % 250}", 1)) for i in range(1000)]
    lk.on_response(c, c.node_id, flood, None)
    assert len(lk.paths[0].shortlist) <= 5 * 4 + 1


def test_exhaustive_value_lookup_escapes_a_captured_path() -> None:
    """Honest nodes know the target's neighbourhood only roughly (each hop halves the rank, as in
    Kademlia); liars just beyond the nearest five answer only with each other. A plain path is
    captured by them; exhaustive mode goes on through the honest candidates and gets there."""
    ids, addrs = _network(300, 7)
    rng = random.Random(8)
    target = rng.randbytes(32)
    ranked = _closest(ids[1:], target, 300)
    rank = {nid: i for i, nid in enumerate(ranked)}
    liars = set(ranked[5:45:2])
    honest = [x for x in ranked if x not in liars]
    seeds = [ranked[7], *honest[150:160]]  # one liar among the seeds

    def run(exhaustive: bool) -> set[bytes]:
        lk = Lookup(target, own_id=ids[0], paths=1, exhaustive=exhaustive)
        lk.seed([(x, addrs[x]) for x in seeds])
        for _ in range(500):
            batch = lk.next_queries()
            if lk.done or not batch:
                break
            for c in batch:
                if c.node_id in liars:
                    known = sorted(liars, key=rank.__getitem__)
                else:
                    known = [x for x in honest if rank[x] >= rank[c.node_id] // 2]
                lk.on_response(c, c.node_id, [(x, addrs[x]) for x in known[:20]], None)
        return {c.node_id for c in lk.answered()}

    assert not run(False) & set(ranked[:5])
    assert run(True) & set(ranked[:5])


def test_settle_mode_waits_for_a_stalled_near_contact() -> None:
    ids, addrs = _network(60, 9)
    target = random.Random(2).randbytes(32)
    ranked = _closest(ids[1:], target, 59)
    for settle in (False, True):
        lk = Lookup(target, own_id=ids[0], k=3, alpha=3, settle=settle)
        lk.seed([(x, addrs[x]) for x in ranked[:4]])
        first = lk.next_queries()
        lk.on_stall(first[0])  # the nearest is slow
        for c in first[1:]:
            lk.on_response(c, c.node_id, [], None)
        for c in lk.next_queries():
            lk.on_response(c, c.node_id, [], None)
        lk.next_queries()
        assert lk.done is (not settle)
        if settle:
            lk.on_response(first[0], first[0].node_id, [], None)  # the late answer settles it
            lk.next_queries()
            assert lk.done
            assert lk.result()[0].node_id == ranked[0]


def test_value_lookup_retries_timed_out_near_contacts_once() -> None:
    """spec/dht.md rule 25: before a value lookup gives up, the nearest candidates that timed out
    get one more query (a briefly overloaded replica is not a dead one); refusals do not."""
    ids, addrs = _network(40, 11)
    target = random.Random(3).randbytes(32)
    ranked = _closest(ids[1:], target, 39)
    slow, refuser = ranked[0], ranked[1]
    for exhaustive in (False, True):
        lk = Lookup(target, own_id=ids[0], k=5, alpha=3, exhaustive=exhaustive)
        lk.seed([(x, addrs[x]) for x in ranked[:8]])
        asked: dict[bytes, int] = {}
        for _ in range(100):
            batch = lk.next_queries()
            if lk.done or not batch:
                break
            for c in batch:
                asked[c.node_id] = asked.get(c.node_id, 0) + 1
                if c.node_id == slow and asked[slow] == 1:
                    lk.on_fail(c, timed_out=True)
                elif c.node_id == refuser:
                    lk.on_fail(c)  # an ERROR: not retried
                else:
                    lk.on_response(c, c.node_id, [], None)
        assert lk.done
        assert asked[refuser] == 1
        assert asked[slow] == (2 if exhaustive else 1)
        assert (slow in {c.node_id for c in lk.answered()}) is exhaustive
