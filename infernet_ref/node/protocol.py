"""Sans-I/O job-protocol connection: authentication, binary-frame pairing, errors, heartbeats.

Theory of operation (spec/job.md §Authentication, §Binary frames, §Heartbeats). A
:class:`JobConnection` is one side of one WebSocket connection. The adapter feeds it every text
frame (``receive_text``) and binary frame (``receive_binary``) with the current time, collects
the frames to send (``data_to_send``) and acts on the returned events. The core never does I/O
and never reads the clock.

The server side starts in ``AWAIT_AUTH`` and queues ``auth.challenge``; the client side answers
it with a signed kind-22242 event. Only an authenticated connection delivers job messages to the
application (:class:`MessageReceived`). Every bad input is answered by the core itself with a
``sys.error`` of the right code and surfaces as :class:`ProtocolViolation`; a fatal one (failed
auth, too many errors) also yields :class:`CloseRequested`. Peer input never raises.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from infernet_ref.errors import LocalProtocolError
from infernet_ref.node.auth import AuthChallenger, check_auth_event, make_auth_event
from infernet_ref.node.errors import ErrorCode, JobProtocolError
from infernet_ref.node.messages import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Message,
    build_message,
    encode_message,
    error_body,
    parse_message,
)

MAX_ERRORS = 16  # spec/job.md §Messages rule 1
CLOSE_POLICY = 1008  # RFC 6455 §7.4.1 policy violation
CLOSE_TOO_BIG = 1009  # RFC 6455 §7.4.1 message too big


class Side(Enum):
    SERVER = "server"
    CLIENT = "client"


class ConnState(Enum):
    """Connection states (spec/job.md §Authentication table)."""

    AWAIT_CHALLENGE = "await_challenge"  # client: waiting for auth.challenge
    AWAIT_AUTH = "await_auth"  # server: challenge sent, waiting for auth.response
    AWAIT_AUTH_OK = "await_auth_ok"  # client: response sent
    AUTHENTICATED = "authenticated"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of what the core reports to its adapter."""


@dataclass(frozen=True, slots=True)
class Authenticated(Event):
    peer_pubkey: str  # the client key (server side) or the server's claimed node key (client side)


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    message: Message
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class ProtocolViolation(Event):
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class CloseRequested(Event):
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class PeerTimedOut(Event):
    silent_for: float


@dataclass
class JobConnection:
    """One endpoint of a job-protocol connection (see the module docstring)."""

    side: Side
    endpoint: str
    secret_key: bytes
    now: float
    challenger: AuthChallenger | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    heartbeat_interval: float = 15.0
    id_prefix: str = "m"
    state: ConnState = field(init=False)
    peer_pubkey: str | None = field(init=False, default=None)
    errors: int = field(init=False, default=0)
    _out: list[str | bytes] = field(init=False, default_factory=list)
    _pending: Message | None = field(init=False, default=None)
    _ids: itertools.count[int] = field(init=False, default_factory=lambda: itertools.count(1))
    _last_rx: float = field(init=False, default=0.0)
    _last_tx: float = field(init=False, default=0.0)
    _hb_seq: int = field(init=False, default=0)
    challenge: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._last_rx = self._last_tx = self.now
        if self.side is Side.SERVER:
            if self.challenger is None:
                raise LocalProtocolError("a server connection needs an AuthChallenger")
            self.challenge = self.challenger.issue(self.now)
            from infernet_ref.nostr import public_key  # noqa: PLC0415

            self.state = ConnState.AWAIT_AUTH
            body = {
                "challenge": self.challenge,
                "endpoint": self.endpoint,
                "node": public_key(self.secret_key).hex(),
            }
            self._queue("auth.challenge", body)
        else:
            self.state = ConnState.AWAIT_CHALLENGE

    # ---- sending -------------------------------------------------------------------------
    def next_id(self) -> str:
        return f"{self.id_prefix}{next(self._ids)}"

    def _queue(
        self,
        msg_type: str,
        body: dict[str, Any],
        *,
        re: str | None = None,
        payload: bytes | None = None,
    ) -> str:
        msg_id = self.next_id()
        if payload is not None:
            body = {
                **body,
                "payload": {
                    "size": len(payload),
                    "sha256": hashlib.sha256(payload).hexdigest(),
                    "format": "safetensors",
                },
            }
        self._out.append(encode_message(build_message(msg_type, msg_id, body, re=re)))
        if payload is not None:
            self._out.append(bytes(payload))
        self._last_tx = self.now
        return msg_id

    def send(
        self,
        msg_type: str,
        body: dict[str, Any],
        *,
        re: str | None = None,
        payload: bytes | None = None,
    ) -> str:
        """Queue a message (and its binary frame); returns its id. Only once authenticated."""
        if self.state is not ConnState.AUTHENTICATED:
            raise LocalProtocolError(f"cannot send {msg_type} in state {self.state.value}")
        return self._queue(msg_type, body, re=re, payload=payload)

    def send_error(
        self, code: ErrorCode | int, message: str, *, re: str | None = None, **extra: Any
    ) -> str:
        """Queue a ``sys.error`` (allowed in any state but CLOSED)."""
        if self.state is ConnState.CLOSED:
            raise LocalProtocolError("connection is closed")
        return self._queue("sys.error", error_body(code, message, **extra), re=re)

    def data_to_send(self) -> list[str | bytes]:
        out, self._out = self._out, []
        return out

    # ---- receiving -----------------------------------------------------------------------
    def receive_text(self, frame: str | bytes, now: float) -> list[Event]:
        """Handle one text frame from the peer (spec/job.md §Messages)."""
        if self.state is ConnState.CLOSED:
            return []
        self.now = self._last_rx = now
        events: list[Event] = []
        if self._pending is not None:
            dropped, self._pending = self._pending, None
            events += self._violation(
                JobProtocolError("announced binary frame did not follow"), dropped.id
            )
        try:
            msg = parse_message(frame, max_size=self.max_message_size)
        except JobProtocolError as exc:
            return events + self._violation(exc, exc.msg_id)
        if "payload" in msg.body_dict:
            self._pending = msg
            return events
        return events + self._dispatch(msg, None)

    def receive_binary(self, data: bytes, now: float) -> list[Event]:
        """Handle one binary frame: it must be the payload announced by the previous envelope."""
        if self.state is ConnState.CLOSED:
            return []
        self.now = self._last_rx = now
        msg, self._pending = self._pending, None
        if msg is None:
            return self._violation(
                JobProtocolError("binary frame without an announcing envelope"), None
            )
        ann = msg.body_dict["payload"]
        if len(data) != ann["size"] or hashlib.sha256(data).hexdigest() != ann["sha256"]:
            return self._violation(
                JobProtocolError("binary frame does not match its announced size/sha256"), msg.id
            )
        return self._dispatch(msg, bytes(data))

    def _violation(
        self, exc: JobProtocolError, re: str | None, *, fatal: bool = False
    ) -> list[Event]:
        self.errors += 1
        fatal = fatal or self.errors > MAX_ERRORS
        events: list[Event] = [ProtocolViolation(int(exc.error_code), str(exc))]
        if self.state is not ConnState.CLOSED:
            self._queue(
                "sys.error", error_body(exc.error_code, str(exc), fatal=fatal or None), re=re
            )
        if fatal:
            self.state = ConnState.CLOSED
            close = CLOSE_TOO_BIG if exc.error_code is ErrorCode.TOO_LARGE else CLOSE_POLICY
            events.append(CloseRequested(close, str(exc)[:120]))
        return events

    def _dispatch(self, msg: Message, payload: bytes | None) -> list[Event]:
        if self.state is ConnState.AUTHENTICATED:
            if msg.type.startswith("auth."):
                return self._violation(
                    JobProtocolError("already authenticated", ErrorCode.INVALID_STATE), msg.id
                )
            if msg.type == "sys.heartbeat" and msg.re is None:
                self._queue("sys.heartbeat", {"seq": msg.body.seq}, re=msg.id)
                return []
            return [MessageReceived(msg, payload)]
        if self.side is Side.SERVER:
            return self._server_auth(msg)
        return self._client_auth(msg)

    def _server_auth(self, msg: Message) -> list[Event]:
        if msg.type != "auth.response":
            return self._violation(
                JobProtocolError(f"{msg.type} before authentication", ErrorCode.UNAUTHENTICATED),
                msg.id,
            )
        assert self.challenge is not None
        assert self.challenger is not None
        try:
            pubkey = check_auth_event(
                msg.body_dict["event"],
                challenger=self.challenger,
                challenge=self.challenge,
                now=self.now,
            )
        except JobProtocolError as exc:
            return self._violation(exc, msg.id, fatal=True)
        self.peer_pubkey = pubkey
        self.state = ConnState.AUTHENTICATED
        self._queue("auth.ok", {"pubkey": self.peer_pubkey}, re=msg.id)
        return [Authenticated(self.peer_pubkey)]

    def _client_auth(self, msg: Message) -> list[Event]:
        if msg.type == "sys.error":
            self.state = ConnState.CLOSED
            return [
                CloseRequested(CLOSE_POLICY, f"server refused: {msg.body.code} {msg.body.message}")
            ]
        if self.state is ConnState.AWAIT_CHALLENGE and msg.type == "auth.challenge":
            self.peer_pubkey = msg.body.node
            event = make_auth_event(
                self.secret_key,
                challenge=msg.body.challenge,
                endpoint=msg.body.endpoint,
                now=self.now,
            )
            self._queue("auth.response", {"event": event}, re=msg.id)
            self.state = ConnState.AWAIT_AUTH_OK
            return []
        if self.state is ConnState.AWAIT_AUTH_OK and msg.type == "auth.ok":
            self.state = ConnState.AUTHENTICATED
            assert self.peer_pubkey is not None
            return [Authenticated(self.peer_pubkey)]
        return self._violation(
            JobProtocolError(
                f"unexpected {msg.type} during authentication", ErrorCode.INVALID_STATE
            ),
            msg.id,
        )

    # ---- timers --------------------------------------------------------------------------
    def tick(self, now: float) -> list[Event]:
        """Send a heartbeat when idle; report a peer silent for three intervals (spec/job.md)."""
        self.now = now
        if self.state is not ConnState.AUTHENTICATED:
            return []
        silent = now - self._last_rx
        if silent > 3 * self.heartbeat_interval:
            return [PeerTimedOut(silent)]
        if now - self._last_tx >= self.heartbeat_interval:
            self._hb_seq += 1
            self._queue("sys.heartbeat", {"seq": self._hb_seq})
        return []

    def connection_lost(self) -> None:
        self.state = ConnState.CLOSED
        self._pending = None
