"""The identity-layer commands, run as `infernet ...` subprocesses with stdin/stdout JSON."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infernet_ref.nostr import npub_encode, public_key, verify_event


class Result:
    def __init__(self, returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def infernet(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> Result:
    """Run ``infernet ARGS`` in this process (the console script's ``main``) with byte stdio."""
    from infernet_ref.cli import main

    streams = [io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"), io.BytesIO(), io.BytesIO()]
    out, err = (io.TextIOWrapper(b, encoding="utf-8", write_through=True) for b in streams[1:])
    saved = sys.stdin, sys.stdout, sys.stderr
    saved_env = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    sys.stdin, sys.stdout, sys.stderr = streams[0], out, err
    try:
        code = main(list(args))
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out.flush()
    err.flush()
    return Result(code, streams[1].getvalue(), streams[2].getvalue())  # type: ignore[attr-defined]


def test_console_script_end_to_end(tmp_path: Path) -> None:
    """One real subprocess, to cover the installed entry point."""
    r = subprocess.run(
        [sys.executable, "-m", "infernet_ref", "key", "generate", "--out", str(tmp_path / "k")],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["npub"].startswith("npub1")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    for name in ("alice", "bob"):
        r = infernet("key", "generate", "--out", str(d / name))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["npub"].startswith("npub1")
    return d / "alice", d / "bob"


def show(path: Path) -> dict[str, str]:
    r = infernet("key", "show", "--key", str(path))
    assert r.returncode == 0, r.stderr
    out: dict[str, str] = json.loads(r.stdout)
    return out


def test_key_show(keys: tuple[Path, Path]) -> None:
    info = show(keys[0])
    assert "nsec" not in info
    assert info["npub"] == npub_encode(info["pubkey"])
    r = infernet("key", "show", "--secret", env={"INFERNET_KEY_FILE": str(keys[0])})
    secret = json.loads(r.stdout)["nsec"]
    from infernet_ref.nostr import nip19_decode

    assert public_key(nip19_decode(secret).data).hex() == info["pubkey"]  # type: ignore[arg-type]


def test_key_file_permissions_enforced(keys: tuple[Path, Path], tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.write_bytes(keys[0].read_bytes())
    loose.chmod(0o644)
    r = infernet("key", "show", "--key", str(loose))
    assert r.returncode == 1
    assert b"chmod 600" in r.stderr


def test_event_sign_verify(keys: tuple[Path, Path]) -> None:
    tmpl = {
        "kind": 8201,
        "created_at": 1_700_000_000,
        "tags": [["p", "ab" * 32], ["job", "j-12345678"], ["verdict", "ok"]],
        "content": "é\u2028😀",
    }
    r = infernet("event", "sign", "--key", str(keys[0]), stdin=json.dumps(tmpl).encode())
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert verify_event(ev)
    assert ev["pubkey"] == show(keys[0])["pubkey"]
    r = infernet("event", "verify", stdin=r.stdout)
    assert r.returncode == 0
    assert json.loads(r.stdout)["valid"] is True
    ev["content"] = "changed"
    r = infernet("event", "verify", stdin=json.dumps(ev).encode())
    assert r.returncode == 1
    assert json.loads(r.stdout) == {
        "valid": False,
        "reason": "id is not sha256 of the event's serialization",
        "path": "$.id",
    }


def test_event_verify_kind_rules(keys: tuple[Path, Path]) -> None:
    tmpl = {"kind": 8201, "created_at": 1, "tags": [["verdict", "great"]], "content": ""}
    signed = infernet(
        "event", "sign", "--key", str(keys[0]), stdin=json.dumps(tmpl).encode()
    ).stdout
    assert infernet("event", "verify", stdin=signed).returncode == 1
    assert infernet("event", "verify", "--nip01-only", stdin=signed).returncode == 0


@pytest.mark.parametrize("junk", [b"", b"{", b"[]", b"\xff\xfe", b'{"kind": 1, "tags": "x"}'])
def test_bad_input_is_a_clean_error(keys: tuple[Path, Path], junk: bytes) -> None:
    r = infernet("event", "sign", "--key", str(keys[0]), stdin=junk)
    assert r.returncode == 1
    assert r.stderr.startswith(b"infernet: error:")
    r = infernet("event", "verify", stdin=junk)
    assert r.returncode == 1
    assert b"Traceback" not in r.stderr


def test_nip44_round_trip(keys: tuple[Path, Path]) -> None:
    alice, bob = keys
    text = "secret \u2028 😀 " * 10
    r = infernet(
        "nip44", "encrypt", "--key", str(alice), "--to", show(bob)["npub"], stdin=text.encode()
    )
    assert r.returncode == 0, r.stderr
    r = infernet(
        "nip44", "decrypt", "--key", str(bob), "--from", show(alice)["pubkey"], stdin=r.stdout
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == text
    r = infernet(
        "nip44", "decrypt", "--key", str(bob), "--from", show(alice)["pubkey"], stdin=b"AAAA" * 40
    )
    assert r.returncode == 1
    assert b"infernet: error:" in r.stderr


def test_nip44_chunked_round_trip(keys: tuple[Path, Path]) -> None:
    alice, bob = keys
    data = os.urandom(200_000)
    r = infernet(
        "nip44",
        "encrypt",
        "--chunked",
        "--key",
        str(alice),
        "--to",
        show(bob)["pubkey"],
        stdin=data,
    )
    assert r.returncode == 0, r.stderr
    r = infernet(
        "nip44",
        "decrypt",
        "--chunked",
        "--key",
        str(bob),
        "--from",
        show(alice)["npub"],
        stdin=r.stdout,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == data
