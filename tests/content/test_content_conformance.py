"""The content.* conformance cases pass on the reference server and fail on a broken one."""

from __future__ import annotations

from pathlib import Path

from infernet_conformance import Target, all_cases, load_cases, run_cases
from infernet_conformance.runner import select

from infernet_ref.content.cid import CID
from infernet_ref.content.exchange import ContentServer, serve_content
from infernet_ref.content.store import BlockStore
from infernet_ref.ws import serve


async def test_reference_passes(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "s", fsync=False)
    cid = store.put_block(b"conformance block" * 1000)
    srv, _ = await serve_content(store)
    load_cases()
    target = Target.parse([f"content=ws://127.0.0.1:{srv.port}/content?cid={cid}"])
    report = await run_cases(select(all_cases(), ["content"]), target, timeout=10)
    await srv.close()
    bad = [(r.case_id, r.verdict, r.message) for r in report.results if r.verdict.value != "pass"]
    assert len(report.results) >= 9
    assert not bad, bad


async def test_corrupting_server_fails(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "s", fsync=False)
    cid = store.put_block(b"conformance block" * 1000)

    class Corrupt(ContentServer):
        def _load(self, c: CID) -> bytes | None:
            block = super()._load(c)
            return None if block is None else b"X" + block[1:]

    srv = await serve(Corrupt(store).handle, compression=False)
    load_cases()
    target = Target.parse([f"content=ws://127.0.0.1:{srv.port}/content?cid={cid}"])
    report = await run_cases(select(all_cases(), ["content.block.verify"]), target, timeout=10)
    await srv.close()
    assert not report.ok
    assert report.results[0].verdict.value == "fail"
