"""On-disk block store: files addressed by CID, an SQLite index, pins, GC and verification.

spec/content.md §Block store. Theory of operation: a block lives in
``<root>/blocks/<2 hex of digest>/<CIDv1 base32>``; it is written to ``<root>/tmp/`` first,
fsynced, then renamed into place, and only then entered into ``index.sqlite`` — so a crash
leaves either nothing, or a complete file that :meth:`BlockStore.verify` re-hashes and
re-indexes. Every block is hashed against its CID before it is stored (a wrong block is
:class:`HashMismatch`, an oversized one :class:`BlockTooLarge`). Pins are recursive (the whole
DAG below the root) or direct; :meth:`BlockStore.gc` deletes every block no pin reaches.
CIDv0 keys are stored as their CIDv1 equivalent (same codec and digest).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from infernet_ref.content.cid import CID, Codec, parse_cid
from infernet_ref.content.dag import MAX_BLOCK_SIZE, walk
from infernet_ref.content.errors import (
    BlockNotFound,
    BlockTooLarge,
    ContentError,
    HashMismatch,
    StoreError,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (cid TEXT PRIMARY KEY, size INTEGER NOT NULL, codec INTEGER NOT NULL,
                                   added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pins (cid TEXT PRIMARY KEY, recursive INTEGER NOT NULL, name TEXT,
                                 created REAL NOT NULL);
"""


@dataclass
class VerifyReport:
    """Outcome of :meth:`BlockStore.verify`."""

    checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    reindexed: list[str] = field(default_factory=list)
    removed_tmp: int = 0

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing


class BlockStore:
    """Blocks on disk under ``root`` (created if absent). Thread-safe."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._blocks = self.root / "blocks"
        self._tmp = self.root / "tmp"
        self._blocks.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.root / "index.sqlite", check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open block index in {self.root}: {exc}") from None
        self._seq = 0
        self._dirs: set[Path] = set()  # shard directories known to exist

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> BlockStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paths ---------------------------------------------------------------------------------
    def _path(self, cid: CID) -> Path:
        return self._blocks / cid.digest[:1].hex() / str(cid)

    @staticmethod
    def _key(cid: CID | str) -> CID:
        return parse_cid(cid).to_v1()

    # -- blocks --------------------------------------------------------------------------------
    def has(self, cid: CID | str) -> bool:
        c = self._key(cid)
        with self._lock:
            row = self._db.execute("SELECT 1 FROM blocks WHERE cid=?", (str(c),)).fetchone()
        return row is not None

    def size(self, cid: CID | str) -> int:
        c = self._key(cid)
        with self._lock:
            row = self._db.execute("SELECT size FROM blocks WHERE cid=?", (str(c),)).fetchone()
        if row is None:
            raise BlockNotFound(str(c))
        return int(row[0])

    def put(
        self, cid: CID | str, data: bytes | bytearray | memoryview, *, verify: bool = True
    ) -> bool:
        """Store ``data`` under ``cid`` after checking its hash; return False if already there."""
        c = self._key(cid)
        if len(data) > MAX_BLOCK_SIZE:
            raise BlockTooLarge(f"block {c} of {len(data)} bytes exceeds {MAX_BLOCK_SIZE}")
        if verify:
            c.verify(data)
        if self.has(c):
            return False
        final = self._path(c)
        with self._lock:
            self._seq += 1
            tmp = self._tmp / f"{os.getpid()}-{threading.get_ident()}-{self._seq}.part"
        try:
            if final.parent not in self._dirs:  # one mkdir per shard directory, not per block
                final.parent.mkdir(exist_ok=True)
                self._dirs.add(final.parent)
            with open(tmp, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            self._dirs.discard(final.parent)  # recreated next time if it went away
            with contextlib.suppress(OSError):
                tmp.unlink()
            why = "disk full" if exc.errno == errno.ENOSPC else exc.strerror
            raise StoreError(f"cannot write block {c}: {why} (local storage error)") from None
        self._index(c, len(data))
        return True

    def _index(self, c: CID, size: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO blocks (cid, size, codec, added) VALUES (?, ?, ?, ?)",
                (str(c), size, int(c.codec), time.time()),
            )

    def sink(self, cid: CID, data: bytes | bytearray | memoryview) -> None:
        """Block sink for the DAG builder, which has just hashed ``data`` itself."""
        self.put(cid, data, verify=False)

    def put_block(self, data: bytes, codec: Codec = Codec.RAW) -> CID:
        """Store a block and return its CIDv1."""
        c = CID.for_block(codec, data)
        self.put(c, data, verify=False)
        return c

    def get(self, cid: CID | str, *, verify: bool = True) -> bytes:
        """Read a block; with ``verify`` its hash is checked (a corrupt file is HashMismatch)."""
        c = self._key(cid)
        try:
            data = self._path(c).read_bytes()
        except FileNotFoundError:
            raise BlockNotFound(str(c)) from None
        except OSError as exc:
            raise StoreError(f"cannot read block {c}: {exc.strerror}") from None
        if verify and not c.matches(data):
            raise HashMismatch(
                str(c), f"stored block {c} is corrupt (run `infernet content verify`)"
            )
        return data

    def get_framed(self, cid: CID | str, prefix: Callable[[int], bytes]) -> bytearray:
        """``prefix(size) || block`` in one buffer, the block read in place and re-hashed.

        For the exchange server: the frame header goes in front without copying the block
        again (a fresh 1 MiB buffer costs page faults as well as the copy).
        """
        c = self._key(cid)
        try:
            with open(self._path(c), "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                if size > MAX_BLOCK_SIZE:
                    raise HashMismatch(str(c), f"stored block {c} is oversized (corrupt)")
                head = prefix(size)
                buf = bytearray(len(head) + size)
                buf[: len(head)] = head
                view = memoryview(buf)
                got = len(head)
                while got < len(buf):
                    n = f.readinto(view[got:])
                    if not n:
                        break
                    got += n
                block = view[len(head) :]
                ok = got == len(buf) and not f.read(1) and c.matches(block)
                block.release()
                view.release()
        except FileNotFoundError:
            raise BlockNotFound(str(c)) from None
        except OSError as exc:
            raise StoreError(f"cannot read block {c}: {exc.strerror}") from None
        if not ok:
            raise HashMismatch(
                str(c), f"stored block {c} is corrupt (run `infernet content verify`)"
            )
        return buf

    def get_or_none(self, cid: CID) -> bytes | None:
        try:
            return self.get(cid)
        except BlockNotFound:
            return None

    def delete(self, cid: CID | str) -> None:
        c = self._key(cid)
        with self._lock:
            self._db.execute("DELETE FROM blocks WHERE cid=?", (str(c),))
        with contextlib.suppress(FileNotFoundError):
            self._path(c).unlink()

    def cids(self) -> Iterator[CID]:
        with self._lock:
            rows = self._db.execute("SELECT cid FROM blocks ORDER BY cid").fetchall()
        for (text,) in rows:
            yield parse_cid(text)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0])

    # -- pins and GC ---------------------------------------------------------------------------
    def pin(self, cid: CID | str, *, recursive: bool = True, name: str | None = None) -> None:
        c = self._key(cid)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO pins (cid, recursive, name, created) VALUES (?, ?, ?, ?)",
                (str(c), int(recursive), name, time.time()),
            )

    def unpin(self, cid: CID | str) -> bool:
        c = self._key(cid)
        with self._lock:
            cur = self._db.execute("DELETE FROM pins WHERE cid=?", (str(c),))
        return cur.rowcount > 0

    def pins(self) -> list[tuple[str, bool, str | None]]:
        with self._lock:
            rows = self._db.execute("SELECT cid, recursive, name FROM pins ORDER BY cid").fetchall()
        return [(r[0], bool(r[1]), r[2]) for r in rows]

    def reachable(self, root: CID | str) -> set[CID]:
        """Every stored block reachable from ``root`` (missing children are skipped)."""
        return {c for c, b in walk(self._key(root), self.get_or_none) if b is not None}

    def gc(self) -> list[str]:
        """Delete every block that no pin reaches; return the deleted CIDs."""
        keep: set[CID] = set()
        for text, recursive, _ in self.pins():
            c = parse_cid(text)
            if recursive:
                try:
                    keep |= self.reachable(c)
                except ContentError:
                    keep.add(c)  # a corrupt DAG keeps what the pin names; verify reports it
            else:
                keep.add(c)
        removed = [str(c) for c in self.cids() if c not in keep]
        for text in removed:
            self.delete(text)
        return removed

    def verify(self, *, repair: bool = False) -> VerifyReport:
        """Re-hash every block; find missing files; re-index complete files the index lacks.

        With ``repair`` corrupt blocks are deleted (they can be fetched again) and missing ones
        are dropped from the index. Leftover temporary files are always removed.
        """
        rep = VerifyReport()
        for tmp in self._tmp.iterdir():
            tmp.unlink()
            rep.removed_tmp += 1
        indexed = set(self.cids())
        for c in indexed:
            rep.checked += 1
            try:
                self.get(c)
            except BlockNotFound:
                rep.missing.append(str(c))
            except HashMismatch:
                rep.corrupt.append(str(c))
        for sub in self._blocks.iterdir():
            for f in sub.iterdir():
                self._verify_orphan(f, indexed, rep)
        if repair:
            for text in rep.corrupt + rep.missing:
                self.delete(text)
        return rep

    def _verify_orphan(self, f: Path, indexed: set[CID], rep: VerifyReport) -> None:
        try:
            c = parse_cid(f.name)
        except ContentError:
            f.unlink()
            return
        if c in indexed:
            return
        data = f.read_bytes()
        if c.matches(data) and f.parent.name == c.digest[:1].hex():
            self._index(c, len(data))
            rep.reindexed.append(str(c))
        else:
            f.unlink()
