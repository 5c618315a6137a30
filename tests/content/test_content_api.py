"""The one-call API of notes/CONTRACTS.md: add_path, fetch, read_range, cid_for_bytes."""

from __future__ import annotations

from pathlib import Path

from content_streams import MIB, gen_bytes

from infernet_ref import content


async def test_contract_api(tmp_path: Path) -> None:
    data = gen_bytes(3 * MIB + 9)
    (tmp_path / "f.bin").write_bytes(data)
    src = content.BlockStore(tmp_path / "src", fsync=False)
    root = content.add_path(tmp_path / "f.bin", src)
    assert root == content.cid_for_bytes(data)
    assert src.pins() == [(root, True, None)]
    srv, _ = await content.serve_content(src)
    url = f"ws://127.0.0.1:{srv.port}/content"
    assert (
        await content.read_range(root, MIB - 1, MIB + 1, providers=[url]) == data[MIB - 1 : MIB + 1]
    )
    dst = content.BlockStore(tmp_path / "dst", fsync=False)
    stats = await content.fetch(root, [url], dst)
    assert stats.blocks_fetched == 5
    assert await content.read_range(root, 0, None, store=dst) == data
    await srv.close()
