"""Node configuration (spec/node.md §Configuration) and JSON logs."""

from __future__ import annotations

import contextlib
import io
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.node.config import (
    build_config,
    default_config,
    load_config,
    load_or_create_key,
    parse_config_text,
)
from infernet_ref.node.errors import NodeConfigError
from infernet_ref.node.log import JsonLog
from infernet_ref.nostr import public_key


def test_defaults_come_from_the_schema() -> None:
    d = default_config()
    assert d["roles"] == ["provider"]
    assert d["listen"] == {"ws": "127.0.0.1:0", "dht": "127.0.0.1:0"}
    assert d["sandbox"]["allow_in_process"] is False
    assert d["sandbox"]["backend"] == "auto"


def test_yaml_and_json_give_the_same_config(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "data_dir: d\nroles: [provider, aggregator]\nsandbox:\n  allow_in_process: true\n"
    )
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "data_dir": "d",
                "roles": ["provider", "aggregator"],
                "sandbox": {"allow_in_process": True},
            }
        )
    )
    a, b = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "a.json")
    assert a.raw == b.raw
    assert a.data_dir == tmp_path / "d"
    assert a.raw["sandbox"] == {
        "backend": "auto",
        "allow_in_process": True,
        "memory_limit_bytes": 4294967296,
        "cpus": 1,
        "pids_limit": 256,
    }


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("roles: [miner]", "$.roles[0]"),
        ("listen: {ws: nope}", "$.listen.ws"),
        ("bogus: 1", "$"),
        ("sandbox: {allow_in_process: 'yes'}", "$.sandbox.allow_in_process"),
        ("- a\n- b", "top level"),
        ("a: [", "YAML"),
    ],
)
def test_bad_config_names_the_field(text: str, where: str) -> None:
    with pytest.raises(NodeConfigError, match=__import__("re").escape(where)):
        build_config(parse_config_text(text, name="t.yaml"), name="t.yaml")


def test_key_created_0600_and_reused(tmp_path: Path) -> None:
    cfg = build_config({"data_dir": str(tmp_path / "node")})
    sk = load_or_create_key(cfg)
    assert stat.S_IMODE(cfg.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.data_dir.stat().st_mode) == 0o700
    assert load_or_create_key(cfg) == sk
    assert len(public_key(sk)) == 32
    cfg.key_file.chmod(0o644)
    with pytest.raises(NodeConfigError):
        load_or_create_key(cfg)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_config_text_gives_config_or_typed_error(text: str) -> None:
    with contextlib.suppress(NodeConfigError):
        build_config(parse_config_text(text))


def test_json_log_one_object_per_line() -> None:
    buf = io.StringIO()
    log = JsonLog(buf, level="info", node="abc")
    log.debug("hidden")
    log.info("job.state", job="j1", note="multi\nline")
    log.error("boom", err=ValueError("x"))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) for x in lines)
    assert first["event"] == "job.state"
    assert first["note"] == "multi\nline"
    assert first["node"] == "abc"
    assert first["ts"].endswith("Z")
    assert second["level"] == "error"
    assert second["err"] == "ValueError('x')"
