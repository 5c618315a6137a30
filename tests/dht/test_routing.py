"""Routing table (spec/dht.md §Routing table; paper §2.2, §4.1), checked against brute force."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.dht.routing import ID_BITS, RoutingTable, Update


def _id(rng: random.Random) -> bytes:
    return rng.randbytes(32)


def _in_bucket(table: RoutingTable, index: int, rng: random.Random) -> bytes:
    return table.random_id_in_bucket(index, rng.randbytes(32))


def test_bucket_index_is_common_prefix_length() -> None:
    own = bytes(32)
    t = RoutingTable(own)
    assert t.bucket_index(b"\x80" + bytes(31)) == 0
    assert t.bucket_index(b"\x01" + bytes(31)) == 7
    assert t.bucket_index(bytes(31) + b"\x01") == 255


@settings(max_examples=100, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.integers(0, ID_BITS - 1),
    st.binary(min_size=32, max_size=32),
)
def test_random_id_lands_in_its_bucket(own: bytes, index: int, rand: bytes) -> None:
    t = RoutingTable(own)
    assert t.bucket_index(t.random_id_in_bucket(index, rand)) == index


def test_closest_matches_brute_force() -> None:
    rng = random.Random(3)
    t = RoutingTable(_id(rng), k=20)
    ids = [_id(rng) for _ in range(400)]
    for i, nid in enumerate(ids):
        t.update(nid, (f"10.{i // 250}.{i % 250}.1", 4000), 1.0)
    target = _id(rng)
    got = [c.node_id for c in t.closest(target, 20)]
    inside = [c.node_id for c in t.contacts()]
    want = sorted(inside, key=lambda n: int.from_bytes(n, "big") ^ int.from_bytes(target, "big"))[
        :20
    ]
    assert got == want
    assert all(len(b.contacts) <= 20 for b in t.buckets)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32),
    st.integers(0, ID_BITS),
    st.integers(1, 70),
    st.booleans(),
)
def test_closest_scans_buckets_like_brute_force(
    seed: int, target_depth: int, n: int, include_failing: bool
) -> None:
    """The bucket-class scan of :meth:`RoutingTable.closest` equals sorting every contact."""
    rng = random.Random(seed)
    t = RoutingTable(_id(rng), k=8)
    for i in range(300):  # contacts at every depth, shallow ones more often (as in a real table)
        depth = min(int(rng.expovariate(0.3)), ID_BITS - 1)
        t.update(_in_bucket(t, depth, rng), (f"10.{i // 250}.{i % 250}.1", 4000), 1.0)
    for c in t.contacts():
        if rng.random() < 0.2:
            c.fails = 1
    target = t.own_id if target_depth == ID_BITS else _in_bucket(t, target_depth, rng)
    pool = [c for c in t.contacts() if include_failing or c.fails == 0]
    ti = int.from_bytes(target, "big")
    want = sorted(pool, key=lambda c: c.int_id ^ ti)[:n]
    got = t.closest(target, n, include_failing=include_failing)
    assert [c.node_id for c in got] == [c.node_id for c in want]


def test_full_bucket_pings_lrs_then_evicts_on_failure() -> None:
    rng = random.Random(4)
    t = RoutingTable(bytes(32), k=3)
    ids = [_in_bucket(t, 0, rng) for _ in range(5)]
    for i, nid in enumerate(ids[:3]):
        assert t.update(nid, (f"1.2.{i}.4", 1), float(i))[0] is Update.ADDED
    outcome, ping = t.update(ids[3], ("1.2.9.4", 1), 10.0)
    assert outcome is Update.CACHED
    assert ping is not None
    assert ping.node_id == ids[0]
    # While that ping is out, another newcomer is only cached.
    assert t.update(ids[4], ("1.2.8.4", 1), 11.0) == (Update.CACHED, None)
    promoted = t.failed(ids[0])
    assert promoted is not None
    assert promoted.node_id == ids[4]
    assert ids[0] not in t
    assert ids[4] in t


def test_full_bucket_keeps_lrs_that_answers() -> None:
    rng = random.Random(5)
    t = RoutingTable(bytes(32), k=2)
    a, b, c = (_in_bucket(t, 0, rng) for _ in range(3))
    t.update(a, ("1.1.1.1", 1), 0.0)
    t.update(b, ("1.1.2.1", 1), 1.0)
    _, ping = t.update(c, ("1.1.3.1", 1), 2.0)
    assert ping is not None
    assert ping.node_id == a
    t.seen(a, 3.0)  # the ping was answered: a becomes most recently seen, c stays cached
    assert [x.node_id for x in t.buckets[0].contacts] == [b, a]
    assert c not in t
    assert t.buckets[0].pinging is None


def test_subnet_limit_per_bucket() -> None:
    rng = random.Random(6)
    t = RoutingTable(bytes(32), k=20, subnet_limit=2)
    ids = [_in_bucket(t, 0, rng) for _ in range(4)]
    assert t.update(ids[0], ("8.8.8.1", 1), 0)[0] is Update.ADDED
    assert t.update(ids[1], ("8.8.8.2", 1), 0)[0] is Update.ADDED
    assert t.update(ids[2], ("8.8.8.3", 1), 0)[0] is Update.REJECTED  # third from 8.8.8.0/24
    assert t.update(ids[3], ("8.8.9.3", 1), 0)[0] is Update.ADDED
    v6 = [_in_bucket(t, 0, rng) for _ in range(3)]
    assert t.update(v6[0], ("2a00:1450:1::1", 1), 0)[0] is Update.ADDED
    assert t.update(v6[1], ("2a00:1450:1:ffff::2", 1), 0)[0] is Update.ADDED
    assert t.update(v6[2], ("2a00:1450:1:1::3", 1), 0)[0] is Update.REJECTED  # same /48


def test_local_addresses_exempt_unless_asked() -> None:
    rng = random.Random(7)
    free = RoutingTable(bytes(32), subnet_limit=1)
    strict = RoutingTable(bytes(32), subnet_limit=1, limit_local=True)
    for i in range(3):
        nid = _in_bucket(free, 0, rng)
        assert free.update(nid, ("127.0.0.1", 5000 + i), 0)[0] is Update.ADDED
        outcome = strict.update(nid, ("127.0.0.1", 5000 + i), 0)[0]
        assert outcome is (Update.ADDED if i == 0 else Update.REJECTED)


def test_known_contact_keeps_its_address_until_it_fails() -> None:
    t = RoutingTable(bytes(32))
    nid = b"\x80" + bytes(31)
    t.update(nid, ("1.1.1.1", 1), 0)
    assert t.update(nid, ("2.2.2.2", 1), 1)[0] is Update.REJECTED
    t.failed(nid)
    assert t.update(nid, ("2.2.2.2", 1), 2)[0] is Update.REFRESHED
    assert t.get(nid) is not None
    assert t.get(nid).addr == ("2.2.2.2", 1)


def test_stale_buckets_and_failures() -> None:
    t = RoutingTable(bytes(32), now=0.0)
    nid = t.random_id_in_bucket(3, bytes(32))
    t.update(nid, ("1.1.1.1", 1), 0.0)
    assert t.stale_buckets(10.0, 3600) == []
    assert t.stale_buckets(4000.0, 3600) == [0, 1, 2, 3, 4]
    for _ in range(3):
        t.failed(nid)
    assert nid not in t
