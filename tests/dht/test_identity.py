"""Key proofs are bound to the responder's address, so they cannot be relayed (spec/dht.md §Identity 2)."""

from __future__ import annotations

from infernet_ref.dht import wire
from infernet_ref.dht.proof import challenge_digest, verify_proof
from infernet_ref.dht.protocol import DHTCore
from infernet_ref.dht.wire import ErrorCode, Kind, Op

from .helpers import Net


def _to(addr: tuple[str, int]) -> list[object]:
    return [wire.pack_ip(addr[0]), addr[1]]


def _replies(core: DHTCore, dst: tuple[str, int]) -> list[wire.Datagram]:
    """Responses and errors ``core`` sent to ``dst`` (not its own challenge PINGs)."""
    out = [wire.decode(d) for d, to in core.datagrams_to_send() if to == dst]
    return [dg for dg in out if dg.y != Kind.QUERY]


def test_responder_refuses_to_sign_for_another_address() -> None:
    net = Net()
    h_addr, h = net.add()
    relay = ("10.0.9.9", 4000)
    q = wire.encode(
        bytes(8), Kind.QUERY, Op.PING, {"id": bytes(32), "c": bytes(16), "to": _to(relay)}
    )
    h.receive_datagram(q, ("10.0.0.77", 4000), net.now)
    (reply,) = _replies(h, ("10.0.0.77", 4000))
    assert reply.y == Kind.ERROR
    assert reply.body["code"] == ErrorCode.PROTOCOL
    # The same challenge naming h's own address is answered with a proof over that address.
    q = wire.encode(
        bytes(8), Kind.QUERY, Op.PING, {"id": bytes(32), "c": bytes(16), "to": _to(h_addr)}
    )
    h.receive_datagram(q, ("10.0.0.77", 4000), net.now)
    (reply,) = _replies(h, ("10.0.0.77", 4000))
    digest = challenge_digest(bytes(16), bytes(32), *_to(h_addr))
    assert verify_proof(reply.body["pk"], reply.body["sig"], digest) == h.node_id


def test_challenge_without_address_is_refused() -> None:
    net = Net()
    _, h = net.add()
    for body in ({"c": bytes(16)}, {"to": [bytes(4), 1]}):
        q = wire.encode(bytes(8), Kind.QUERY, Op.PING, dict(body, id=bytes(32)))
        h.receive_datagram(q, ("10.0.0.77", 4000), net.now)
        (reply,) = _replies(h, ("10.0.0.77", 4000))
        assert reply.y == Kind.ERROR
        assert reply.body["code"] == ErrorCode.PROTOCOL


def _relay_attack(rewrite_to: bool) -> tuple[Net, tuple[str, int], object, object]:
    """M sits at its own address and relays a's challenge to honest h, then h's proof back to a."""
    net = Net()
    _a_addr, a = net.add()
    h_addr, h = net.add()
    m_addr = ("10.0.5.5", 4000)  # no core there: the test plays M by hand
    req = a.query(m_addr, Op.PING, {}, net.now)
    assert req is not None
    assert req.nonce is not None
    (sent, dst), *_ = a.datagrams_to_send()
    assert dst == m_addr
    q = wire.decode(sent)
    body = dict(q.body)
    if rewrite_to:
        body["to"] = _to(h_addr)  # ask h for a proof h will give: over its own address
    h.receive_datagram(wire.encode(q.t, Kind.QUERY, Op.PING, body), m_addr, net.now)
    replies = _replies(h, m_addr)
    return net, m_addr, (a, req), replies


def test_relayed_proof_is_refused_by_the_querier() -> None:
    net, m_addr, (a, req), replies = _relay_attack(rewrite_to=True)
    (reply,) = [r for r in replies if r.y == Kind.RESPONSE]
    assert "sig" in reply.body  # h signed, but over h's address
    a.receive_datagram(wire.encode(req.t, Kind.RESPONSE, Op.PING, reply.body), m_addr, net.now)
    assert a.proven_id(m_addr) is None
    assert reply.body["id"] not in a.table


def test_relay_naming_its_own_address_gets_no_proof() -> None:
    _net, _m_addr, _, replies = _relay_attack(rewrite_to=False)
    assert all(r.y == Kind.ERROR or "sig" not in r.body for r in replies)
    assert any(r.y == Kind.ERROR for r in replies)


def test_wildcard_bind_matches_any_ip_at_its_port() -> None:
    net = Net()
    _, h = net.add()
    h.set_addresses([("0.0.0.0", 4000), ("203.0.113.7", 51000)])
    assert h.owns_address(wire.pack_ip("198.51.100.1"), 4000)
    assert h.owns_address(wire.pack_ip("203.0.113.7"), 51000)
    assert not h.owns_address(wire.pack_ip("203.0.113.7"), 4000 + 1)
    h.set_addresses([])
    assert not h.owns_address(wire.pack_ip("10.0.0.1"), 4000)  # unknown address: sign nothing


async def test_udp_node_signs_for_its_bound_and_public_addresses() -> None:
    from infernet_ref.dht import DHTNode

    node = await DHTNode.create(bytes([7]) * 32, public_addresses=[("198.51.100.4", 4000)])
    try:
        host, port = node.address
        assert node.core.owns_address(wire.pack_ip(host), port)
        assert node.core.owns_address(wire.pack_ip("198.51.100.4"), 4000)
        assert not node.core.owns_address(wire.pack_ip("198.51.100.4"), port)
    finally:
        await node.close()
