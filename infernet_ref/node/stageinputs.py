"""Starting a directly routed stage 0 (spec/job.md §Direct routing rule 1, §Failure and replay).

Theory of operation. ``stage.inputs`` opens the client's sealed InputsPlaintext (from
``route.client``, to this provider) or takes a replay of an older stage-0 session of the same
driver and client, checks it against the route (prompt length, room for the new tokens, token
ids below the vocabulary) and starts the ring in a task of its own. Every refusal leaves the
session as it was.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infernet_ref.node.errors import ErrorCode, JobProtocolError
from infernet_ref.node.messages import Message
from infernet_ref.node.payloads import open_plaintext
from infernet_ref.node.routing import Ring, Route, Router
from infernet_ref.node.transport import JobPeer

if TYPE_CHECKING:
    from infernet_ref.node.provider import ServedModel, Session


class StageInputs:
    """Session lookup and ``stage.inputs`` of the :class:`Provider` (a mixin)."""

    router: Router | None
    sessions: dict[str, Session]
    models: dict[str, ServedModel]

    def _session(self, peer: JobPeer, sid: str) -> Session:
        s = self.sessions.get(sid)
        if s is None or s.peer is not peer:
            raise JobProtocolError(
                f"no session {sid} on this connection", ErrorCode.UNKNOWN_SESSION
            )
        return s

    async def _inputs(self, peer: JobPeer, msg: Message, _: bytes | None) -> None:
        """Stage 0 of a routed session starts (spec/job.md §Direct routing rule 1, §Replay)."""
        body = msg.body_dict
        s = self._session(peer, body["session"])
        r = s.route
        if r is None or not r.first or self.router is None:
            raise JobProtocolError(
                f"session {s.id} is not a routed stage 0", ErrorCode.INVALID_STATE
            )
        if s.ring is not None or s.step:
            raise JobProtocolError(f"session {s.id} has started already", ErrorCode.INVALID_STATE)
        if "replay" in body:
            ring = self._replay_ring(peer, body["replay"], r)
        else:
            plain = open_plaintext(
                body["inputs"], self.router.sk, sender=r.client, def_name="InputsPlaintext"
            )
            ring = Ring(
                list(plain["prompt_ids"]),
                bytes.fromhex(plain.get("salt", "")),
                list(plain.get("generated_ids", [])),
            )
        self._check_inputs(s, r, ring)
        s.ring = ring
        await peer.send("sys.ok", {"session": s.id}, re=msg.id)
        s.task = self.router.start(s)

    def _replay_ring(self, peer: JobPeer, replay: dict[str, Any], r: Route) -> Ring:
        old = self.sessions.get(replay["session"])
        if old is None or old.opener != peer.peer_pubkey or old.ring is None:
            raise JobProtocolError(
                f"no stage-0 session {replay['session']} of yours to replay",
                ErrorCode.INVALID_STATE,
            )
        if old.route is None or old.route.client != r.client:  # the history stays the client's
            raise JobProtocolError(
                f"session {old.id} holds another client's history", ErrorCode.INVALID_STATE
            )
        n = replay["generated"]
        if n > len(old.ring.generated):
            raise JobProtocolError(
                f"session {old.id} produced {len(old.ring.generated)} tokens, not {n}",
                ErrorCode.INVALID_STATE,
            )
        return Ring(list(old.ring.prompt), old.ring.salt, old.ring.generated[:n])

    def _check_inputs(self, s: Session, r: Route, ring: Ring) -> None:
        vocab = self._vocab(s)
        if len(ring.prompt) != r.prompt_tokens:
            raise JobProtocolError(
                f"inputs hold {len(ring.prompt)} prompt tokens, the route says {r.prompt_tokens}"
            )
        if len(ring.generated) >= r.max_new_tokens:
            raise JobProtocolError("inputs already hold every token to generate")
        if len(ring.prompt) + r.max_new_tokens > s.max_tokens:
            raise JobProtocolError(
                f"prompt and new tokens exceed the session's {s.max_tokens}", ErrorCode.NO_CAPACITY
            )
        if vocab and any(t >= vocab for t in ring.prompt + ring.generated):
            raise JobProtocolError(f"token ids must be below the vocabulary size {vocab}")

    def _vocab(self, s: Session) -> int:
        served = self.models.get(s.worker_key[0])
        return 0 if served is None else _vocab_size(served.path)


@functools.lru_cache(maxsize=64)
def _vocab_size(model_dir: Path) -> int:
    """The served model's vocabulary size from its config.json (0: unknown), read once."""
    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return 0
    return int(cfg.get("vocab_size", 0)) if isinstance(cfg, dict) else 0
