"""Reading an activation frame's safetensors header without decoding its tensor
(spec/runtime.md §5.1, spec/job.md §Pipeline sessions): the provider checks a frame's session
and position and counts its tokens this way; the worker decodes it fully."""

from __future__ import annotations

from typing import Any

from infernet_ref.node.errors import JobProtocolError


def frame_meta(payload: bytes) -> dict[str, Any]:
    """The ``__metadata__`` and tensor entries of a safetensors header, without torch."""
    import json  # noqa: PLC0415

    if len(payload) < 8:
        raise JobProtocolError("activation frame shorter than its header length")
    n = int.from_bytes(payload[:8], "little")
    if n > min(len(payload) - 8, 1 << 20):
        raise JobProtocolError("activation frame header length out of range")
    try:
        header = json.loads(payload[8 : 8 + n])
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobProtocolError(f"activation frame header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
        raise JobProtocolError("activation frame has no metadata")
    return header


def check_frame_header(
    payload: bytes, session: str, position: int, *, header: dict[str, Any] | None = None
) -> None:
    """The frame must belong to ``session`` at ``position`` (spec/job.md §Pipeline sessions).

    ``header`` is the already parsed :func:`frame_meta` of ``payload``, when the caller has it.
    """
    meta = (header if header is not None else frame_meta(payload))["__metadata__"]
    if meta.get("session") != session or meta.get("position") != str(position):
        raise JobProtocolError(
            f"activation frame is for session {meta.get('session')!r} at {meta.get('position')!r}, not {session!r} at {position}"
        )


def frame_tokens(payload: bytes, *, header: dict[str, Any] | None = None) -> int:
    """Number of tokens an input frame carries (its tensor's first dimension)."""
    if header is None:
        header = frame_meta(payload)
    for name, entry in header.items():
        if name != "__metadata__" and isinstance(entry, dict) and entry.get("shape"):
            return int(entry["shape"][0])
    raise JobProtocolError("activation frame holds no tensor")
