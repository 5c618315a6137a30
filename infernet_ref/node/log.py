"""Structured logs: one JSON object per line (spec/node.md §Logs and shutdown).

``JsonLog.event(name, **fields)`` writes ``{"ts", "level", "event", "node", ...fields}`` as one
line of JSON (keys sorted, non-JSON values as ``repr``) and flushes. Levels filter as usual.
A record can never span lines: newlines inside values are escaped by JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from typing import IO, Any

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class JsonLog:
    def __init__(
        self, stream: IO[str] | None = None, *, level: str = "info", node: str | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.threshold = LEVELS[level]
        self.node = node
        self._lock = threading.Lock()

    def event(self, name: str, *, level: str = "info", **fields: Any) -> None:
        if LEVELS[level] < self.threshold:
            return
        record: dict[str, Any] = {
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "event": name,
        }
        if self.node:
            record["node"] = self.node
        record.update(fields)
        line = json.dumps(record, sort_keys=True, default=repr, ensure_ascii=False)
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or full log stream must not take the node down

    def debug(self, name: str, **fields: Any) -> None:
        self.event(name, level="debug", **fields)

    def info(self, name: str, **fields: Any) -> None:
        self.event(name, level="info", **fields)

    def warning(self, name: str, **fields: Any) -> None:
        self.event(name, level="warning", **fields)

    def error(self, name: str, **fields: Any) -> None:
        self.event(name, level="error", **fields)
