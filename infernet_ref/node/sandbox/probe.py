"""The sandbox probe: a deliberately hostile worker (spec/node-worker.md §Probe).

Theory of operation: a sandbox is only as good as the evidence that it holds. This program
speaks the worker control channel but, instead of running a model, does what a malicious model
or a compromised runtime would try: read host files, write where it should not, open network
connections, allocate without bound, fork without bound, and report who it runs as. The
executors' tests and ``infernet sandbox check`` start it in each backend and assert that every
attempt is contained — and, as controls, that the same probe *succeeds* where it should (reading
the model mount, connecting from the unconfined in-process backend), so a broken probe cannot
pass as a tight sandbox. Each op reports what happened rather than raising, except where the
kernel kills the process (the memory limit), which the provider sees as a crashed worker.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from infernet_ref.node.sandbox.channel import Dispatch, OpError, Reply, serve, take_stdout

MIB = 1 << 20
MAX_READ = 1 << 16


def _identity() -> dict[str, Any]:
    caps = ""
    try:
        with open("/proc/self/status") as f:
            lines = f.read().splitlines()
        for line in lines:
            if line.startswith("CapEff:"):
                caps = line.split()[1]
    except OSError:
        caps = "unknown"
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "euid": os.geteuid(),
        "pid": os.getpid(),
        "cap_eff": caps,
        "root_entries": sorted(os.listdir("/")),
    }


def _read(path: str) -> Reply:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_READ)
    except OSError as exc:
        return {"readable": False, "error": f"{type(exc).__name__}: {exc.strerror}"}, b""
    return {"readable": True, "size": len(data)}, data


def _write(path: str) -> Reply:
    try:
        with open(path, "wb") as f:
            f.write(b"probe")
    except OSError as exc:
        return {"written": False, "error": f"{type(exc).__name__}: {exc.strerror}"}, b""
    return {"written": True}, b""


def _connect(host: str, port: int, timeout: float) -> Reply:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return {"connected": False, "error": f"{type(exc).__name__}: {exc}"}, b""
    return {"connected": True}, b""


def _alloc(mib: int) -> Reply:
    held: list[bytearray] = []
    try:
        for _ in range(mib):
            block = bytearray(MIB)
            block[::4096] = b"\x01" * len(block[::4096])  # touch every page
            held.append(block)
    except MemoryError:
        return {"allocated_mib": len(held), "memory_error": True}, b""
    return {"allocated_mib": len(held), "memory_error": False}, b""


def _spawn(count: int) -> Reply:
    """Fork up to ``count`` children that wait on a pipe; report how many the kernel allowed."""
    read_end, write_end = os.pipe()
    children: list[int] = []
    error = ""
    try:
        for _ in range(count):
            try:
                pid = os.fork()
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc.strerror}"
                break
            if pid == 0:  # child: wait until the parent closes the pipe, then vanish
                os.close(write_end)
                os.read(read_end, 1)
                os._exit(0)
            children.append(pid)
    finally:
        os.close(write_end)
        os.close(read_end)
        for pid in children:
            os.waitpid(pid, 0)
    return {"spawned": len(children), "error": error}, b""


def _int(header: dict[str, Any], name: str, lo: int, hi: int) -> int:
    value = header.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise OpError("bad_request", f"'{name}' must be an integer in [{lo}, {hi}]")
    return value


def _str(header: dict[str, Any], name: str) -> str:
    value = header.get(name)
    if not isinstance(value, str):
        raise OpError("bad_request", f"'{name}' must be a string")
    return value


def build_dispatch(argv: list[str]) -> Dispatch:
    """The probe's request handler (argv is accepted for symmetry with the worker and ignored)."""
    del argv

    def dispatch(op: str, header: dict[str, Any], payload: bytes) -> Reply:
        if op == "ping":
            return {"program": "probe", "pid": os.getpid()}, b""
        if op == "probe.identity":
            return _identity(), b""
        if op == "probe.read":
            return _read(_str(header, "path"))
        if op == "probe.write":
            return _write(_str(header, "path"))
        if op == "probe.connect":
            return _connect(_str(header, "host"), _int(header, "port", 1, 65535), 3.0)
        if op == "probe.alloc":
            return _alloc(_int(header, "mib", 1, 1 << 20))
        if op == "probe.spawn":
            return _spawn(_int(header, "count", 1, 100_000))
        if op == "probe.echo":
            return {"size": len(payload)}, payload
        raise OpError("unknown_op", f"probe does not implement {op!r}")

    return dispatch


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m infernet_ref.node.sandbox.probe``."""
    parser = argparse.ArgumentParser(prog="infernet-probe")
    parser.add_argument("--max-payload", type=int, default=1 << 30)
    args, rest = parser.parse_known_args(argv)
    channel = take_stdout()
    serve(build_dispatch(rest), sys.stdin.buffer, channel, max_payload=args.max_payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
