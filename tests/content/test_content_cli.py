"""`infernet content` end to end: add, serve (subprocess), get, verify, car, gc."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from content_streams import MIB, gen_bytes

from infernet_ref.cli import main
from infernet_ref.content.cid import parse_cid
from infernet_ref.content.dagpb import decode_node
from infernet_ref.content.store import BlockStore
from infernet_ref.content.unixfs import DataType, decode_unixfs

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


def test_hamt_folder_add_ls_cat_serve_get(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder past the profile's threshold (950 names of 240 bytes): a HAMT end to end."""
    d = tmp_path / "many"
    (d / "sub").mkdir(parents=True)
    names = [f"{i:05d}-" + "w" * 234 for i in range(950)]  # 287-byte links: > 256 KiB
    for n in names:
        (d / n).write_bytes(n.encode())
    (d / "sub" / "inner.txt").write_text("inner")
    store = str(tmp_path / "s")
    assert main(["content", "add", str(d), "--store", store]) == 0
    root = capsys.readouterr().out.strip()
    with BlockStore(store) as bs:
        node = decode_node(bs.get(parse_cid(root)))
    assert node.data is not None
    assert decode_unixfs(node.data).type == DataType.HAMT_SHARD
    assert main(["content", "ls", root, "--store", store]) == 0
    listed = [line.split("\t")[2] for line in capsys.readouterr().out.splitlines()]
    assert listed == sorted([*names, "sub"])
    assert main(["content", "cat", f"{root}/sub/inner.txt", "--store", store]) == 0
    assert capsys.readouterr().out == "inner"
    assert main(["content", "cat", f"{root}/{names[789]}", "--store", store]) == 0
    assert capsys.readouterr().out == names[789]
    assert main(["content", "ls", f"{root}/sub", "--store", store]) == 0
    assert capsys.readouterr().out.endswith("\tinner.txt\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "infernet_ref", "content", "serve", "--store", store],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        url = proc.stderr.readline().split(" at ")[1].strip()
        out = tmp_path / "out"
        args = ["content", "get", root, "--out", str(out), "--provider", url]
        assert main([*args, "--store", str(tmp_path / "c")]) == 0
        assert sorted(p.name for p in out.iterdir()) == sorted([*names, "sub"])
        assert (out / names[7]).read_bytes() == names[7].encode()
        assert (out / "sub" / "inner.txt").read_text() == "inner"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
