"""`infernet content` end to end: add, serve (subprocess), get, verify, car, gc."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from content_streams import MIB, gen_bytes

from infernet_ref.cli import main

HELLO = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


def test_cid_add_verify_car(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "h").write_bytes(b"hello world")
    assert main(["content", "cid", str(tmp_path / "h")]) == 0
    assert capsys.readouterr().out.strip() == HELLO
    store = str(tmp_path / "s")
    assert main(["content", "add", str(tmp_path / "h"), "--store", store]) == 0
    assert capsys.readouterr().out.strip() == HELLO
    assert main(["content", "verify", "--store", store]) == 0
    car = str(tmp_path / "x.car")
    assert main(["content", "export", HELLO, car, "--store", store]) == 0
    assert main(["content", "import", car, "--store", str(tmp_path / "s2")]) == 0
    capsys.readouterr()
    assert main(["content", "cat", HELLO, "--range", "6:", "--store", str(tmp_path / "s2")]) == 0
    assert capsys.readouterr().out == "world"
    blocks = list((tmp_path / "s" / "blocks").rglob(HELLO))
    blocks[0].write_bytes(b"hello WORLD")
    assert main(["content", "verify", "--store", store]) == 1
    assert main(["content", "verify", "--store", store, "--repair"]) == 1
    assert main(["content", "verify", "--store", store]) == 0


def test_serve_and_get(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "w.safetensors").write_bytes(gen_bytes(3 * MIB + 1))
    store = str(tmp_path / "s")
    assert main(["content", "add", str(d), "--store", store]) == 0
    root = capsys.readouterr().out.strip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "infernet_ref", "content", "serve", "--store", store],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = line.split(" at ")[1].strip()
        out = tmp_path / "out"
        rc = main(
            [
                "content",
                "get",
                root,
                "--out",
                str(out),
                "--provider",
                url,
                "--store",
                str(tmp_path / "c"),
            ]
        )
        assert rc == 0
        assert (out / "w.safetensors").read_bytes() == (d / "w.safetensors").read_bytes()
        assert (out / "config.json").read_text() == "{}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
