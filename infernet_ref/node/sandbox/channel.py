"""Worker side of the control channel: a blocking request/reply loop over stdin/stdout.

Theory of operation (spec/node-worker.md §Requests): the worker reads frames from stdin and, for
each, calls the program's dispatcher and writes exactly one reply frame to stdout. A reply
header always has ``id`` (copied from the request when it is an integer) and ``ok``; a failure
is ``ok: false`` with ``error: {code, message}`` — a *typed reply*, never a crash. A framing
error (the provider sent garbage, the channel lost sync) gets one final error reply and ends the
loop, since nothing after it can be trusted. End of input ends the loop cleanly. The worker's
real stdout is taken over by the channel, so stray ``print`` calls cannot corrupt it: they go to
stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from infernet_ref.errors import InfernetError, ValidationError
from infernet_ref.node.sandbox.framing import (
    DEFAULT_MAX_PAYLOAD,
    FrameDecoder,
    FramingError,
    encode_frame,
)
from infernet_ref.specs import validate_data

REQUEST_SCHEMA = "node-worker"  # spec/schemas/node-worker.schema.json (WorkerRequest)
Reply = tuple[dict[str, Any], bytes]
Dispatch = Callable[[str, dict[str, Any], bytes], Reply]
READ_CHUNK = 1 << 16


class OpError(InfernetError):
    """A request failed in a way the worker reports as ``error.code`` (spec/node-worker.md §Errors)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def error_reply(req_id: object, code: str, message: str) -> dict[str, Any]:
    """Build the header of a typed error reply."""
    out: dict[str, Any] = {"ok": False, "error": {"code": code, "message": message[:2000]}}
    if isinstance(req_id, int) and not isinstance(req_id, bool):
        out["id"] = req_id
    return out


def handle_frame(dispatch: Dispatch, header: dict[str, Any], payload: bytes) -> Reply:
    """Validate one request header (WorkerRequest schema), run it through ``dispatch`` and turn
    every failure into a typed error reply (spec/node-worker.md §Requests, §Errors)."""
    req_id = header.get("id")
    op = header.get("op")
    if not isinstance(op, str):
        return error_reply(req_id, "bad_request", "header has no string 'op'"), b""
    try:
        validate_data(header, REQUEST_SCHEMA)
    except ValidationError as exc:
        code = "unknown_op" if exc.path == "$.op" else "bad_request"
        return error_reply(req_id, code, str(exc)), b""
    try:
        reply, out = dispatch(op, header, payload)
    except OpError as exc:
        return error_reply(req_id, exc.code, str(exc)), b""
    except InfernetError as exc:
        return error_reply(req_id, "invalid", f"{type(exc).__name__}: {exc}"), b""
    except MemoryError:
        return error_reply(req_id, "out_of_memory", "the worker ran out of memory"), b""
    except Exception as exc:
        return error_reply(req_id, "internal", f"{type(exc).__name__}: {exc}"), b""
    reply = {**reply, "ok": True}
    if isinstance(req_id, int) and not isinstance(req_id, bool):
        reply["id"] = req_id
    return reply, out


def take_stdout() -> BinaryIO:
    """Return a binary handle on the real stdout and point fd 1 at stderr for everything else."""
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def serve(
    dispatch: Dispatch,
    reader: BinaryIO,
    writer: BinaryIO,
    *,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Serve requests until end of input or a framing error (spec/node-worker.md §Requests)."""
    decoder = FrameDecoder(max_payload=max_payload)
    while True:
        try:
            frame = decoder.next_frame()
        except FramingError as exc:
            writer.write(encode_frame(error_reply(None, "framing", str(exc))))
            writer.flush()
            return
        if frame is None:
            chunk = (
                reader.read1(READ_CHUNK) if hasattr(reader, "read1") else reader.read(READ_CHUNK)
            )
            if not chunk:
                return
            decoder.receive_data(chunk)
            continue
        if frame.header.get("op") == "shutdown":
            req_id = frame.header.get("id")
            ack: dict[str, Any] = {"ok": True}
            if isinstance(req_id, int) and not isinstance(req_id, bool):
                ack["id"] = req_id
            writer.write(encode_frame(ack))
            writer.flush()
            return
        reply, out = handle_frame(dispatch, frame.header, frame.payload)
        writer.write(encode_frame(reply, out, max_payload=max(max_payload, len(out))))
        writer.flush()
