"""Local state in SQLite (spec/node.md §Local state).

Theory of operation. One database file in WAL mode with ``synchronous=FULL``: a committed
transition survives a crash or power loss. Every job state change is one transaction that checks
the transition against :mod:`infernet_ref.node.jobstate`, updates ``jobs`` and appends to
``job_events``; a refused transition changes nothing. Peers accumulate the counters the
reputation score is computed from; ``content`` indexes the blocks/CIDs held locally; ``results``
keeps each replica's output hash. Every sqlite failure (disk full, I/O error, a corrupt file)
becomes a :class:`StoreError`. Calls are synchronous and short; the asyncio adapter calls them
directly.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infernet_ref.node.errors import StoreError
from infernet_ref.node.jobstate import TERMINAL, JobState, check_transition

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  job TEXT NOT NULL, role TEXT NOT NULL, owner TEXT NOT NULL, model TEXT NOT NULL,
  state TEXT NOT NULL, params TEXT NOT NULL, inputs TEXT, plan TEXT, output TEXT,
  output_sha256 TEXT, verification TEXT, error_code INTEGER, error TEXT, reroutes INTEGER NOT NULL DEFAULT 0,
  created REAL NOT NULL, updated REAL NOT NULL, PRIMARY KEY (job, role));
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (role, state);
CREATE TABLE IF NOT EXISTS job_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, role TEXT NOT NULL,
  old TEXT, new TEXT NOT NULL, at REAL NOT NULL, note TEXT);
CREATE TABLE IF NOT EXISTS peers (
  pubkey TEXT PRIMARY KEY, endpoint TEXT, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
  successes INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
  results INTEGER NOT NULL DEFAULT 0, mismatches INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS content (cid TEXT PRIMARY KEY, size INTEGER NOT NULL, pinned INTEGER NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
  job TEXT NOT NULL, replica INTEGER NOT NULL, output_sha256 TEXT NOT NULL, providers TEXT NOT NULL,
  at REAL NOT NULL, PRIMARY KEY (job, replica));
"""


@dataclass(frozen=True, slots=True)
class JobRecord:
    job: str
    role: str
    owner: str
    model: str
    state: JobState
    params: dict[str, Any]
    inputs: dict[str, Any] | None
    plan: dict[str, Any] | None
    output: Any  # client: the output ids; aggregator: {count, sealed, finish}
    output_sha256: str | None
    verification: dict[str, Any] | None
    error_code: int | None
    error: str | None
    reroutes: int
    created: float
    updated: float

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True, slots=True)
class PeerRecord:
    pubkey: str
    endpoint: str | None
    first_seen: float
    last_seen: float
    successes: int
    failures: int
    results: int
    mismatches: int

    def score(self) -> float:
        """Reputation in [0, 1]: uptime x verified (spec/node.md §Reputation)."""
        steps = self.successes + self.failures
        uptime = 1.0 if steps == 0 else self.successes / steps
        verified = 1.0 - self.mismatches / max(1, self.results)
        return max(0.0, uptime * verified)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """The node's SQLite database (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_DDL)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open state database {self.path}: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"state database {self.path}: {exc}") from exc
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:  # disk full at commit: roll back, keep the old state
            self._db.execute("ROLLBACK")
            raise StoreError(f"state database {self.path}: {exc}") from exc

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"state database {self.path}: {exc}") from exc

    # ---- jobs ------------------------------------------------------------------------------
    def create_job(
        self,
        job: str,
        *,
        role: str,
        owner: str,
        model: str,
        params: dict[str, Any],
        now: float,
        inputs: dict[str, Any] | None = None,
    ) -> JobRecord:
        """Record a new job in state ``queued``; StoreError if (job, role) exists."""
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO jobs (job, role, owner, model, state, params, inputs, created, updated) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        job,
                        role,
                        owner,
                        model,
                        JobState.QUEUED.value,
                        json.dumps(params),
                        None if inputs is None else json.dumps(inputs),
                        now,
                        now,
                    ),
                )
                db.execute(
                    "INSERT INTO job_events (job, role, old, new, at) VALUES (?,?,?,?,?)",
                    (job, role, None, "queued", now),
                )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"job {job!r} already exists for role {role}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"state database {self.path}: {exc}") from exc
        return self.get_job(job, role)

    def transition(
        self,
        job: str,
        role: str,
        new: JobState,
        *,
        now: float,
        note: str | None = None,
        **fields: Any,
    ) -> JobRecord:
        """Move a job to ``new`` in one transaction, setting optional ``fields`` (plan, output, ...)."""
        allowed = {
            "plan",
            "output",
            "output_sha256",
            "verification",
            "error_code",
            "error",
            "reroutes",
        }
        if set(fields) - allowed:
            raise StoreError(f"unknown job fields {sorted(set(fields) - allowed)}")
        try:
            with self._tx() as db:
                row = db.execute(
                    "SELECT state FROM jobs WHERE job=? AND role=?", (job, role)
                ).fetchone()
                if row is None:
                    raise StoreError(f"no job {job!r} for role {role}")
                old = JobState(row[0])
                check_transition(old, new)
                sets = ["state=?", "updated=?"]
                args: list[Any] = [new.value, now]
                for k, v in fields.items():
                    sets.append(f"{k}=?")
                    args.append(
                        json.dumps(v)
                        if k in {"plan", "output", "verification"} and v is not None
                        else v
                    )
                db.execute(
                    f"UPDATE jobs SET {', '.join(sets)} WHERE job=? AND role=?", (*args, job, role)
                )
                db.execute(
                    "INSERT INTO job_events (job, role, old, new, at, note) VALUES (?,?,?,?,?,?)",
                    (job, role, old.value, new.value, now, note),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"state database {self.path}: {exc}") from exc
        return self.get_job(job, role)

    def update_job(self, job: str, role: str, *, now: float, **fields: Any) -> None:
        """Update non-state fields (e.g. the partial output during a run) in one transaction."""
        if not fields:
            return
        sets = [f"{k}=?" for k in fields]
        args = [
            json.dumps(v) if k in {"plan", "output", "verification"} and v is not None else v
            for k, v in fields.items()
        ]
        try:
            with self._tx() as db:
                db.execute(
                    f"UPDATE jobs SET {', '.join(sets)}, updated=? WHERE job=? AND role=?",
                    (*args, now, job, role),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"state database {self.path}: {exc}") from exc

    def get_job(self, job: str, role: str) -> JobRecord:
        row = self._run("SELECT * FROM jobs WHERE job=? AND role=?", (job, role)).fetchone()
        if row is None:
            raise StoreError(f"no job {job!r} for role {role}")
        return self._record(row)

    def find_job(self, job: str, role: str) -> JobRecord | None:
        row = self._run("SELECT * FROM jobs WHERE job=? AND role=?", (job, role)).fetchone()
        return None if row is None else self._record(row)

    def list_jobs(
        self, *, role: str | None = None, states: set[JobState] | None = None, limit: int = 100
    ) -> list[JobRecord]:
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if role is not None:
            sql += " AND role=?"
            args.append(role)
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += [s.value for s in states]
        rows = self._run(sql + " ORDER BY created DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._record(r) for r in rows]

    def events(self, job: str, role: str) -> list[tuple[str | None, str, str | None]]:
        rows = self._run(
            "SELECT old, new, note FROM job_events WHERE job=? AND role=? ORDER BY seq", (job, role)
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    @staticmethod
    def _record(row: tuple[Any, ...]) -> JobRecord:
        (
            job,
            role,
            owner,
            model,
            state,
            params,
            inputs,
            plan,
            output,
            sha,
            ver,
            code,
            err,
            reroutes,
            created,
            updated,
        ) = row
        return JobRecord(
            job,
            role,
            owner,
            model,
            JobState(state),
            json.loads(params),
            _loads(inputs),
            _loads(plan),
            _loads(output),
            sha,
            _loads(ver),
            code,
            err,
            reroutes,
            created,
            updated,
        )

    # ---- results, peers, content ------------------------------------------------------------
    def record_result(
        self, job: str, replica: int, output_sha256: str, providers: list[str], *, now: float
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?)",
                (job, replica, output_sha256, json.dumps(providers), now),
            )

    def results(self, job: str) -> list[tuple[int, str, list[str]]]:
        rows = self._run(
            "SELECT replica, output_sha256, providers FROM results WHERE job=? ORDER BY replica",
            (job,),
        ).fetchall()
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def peer_seen(self, pubkey: str, endpoint: str | None, *, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO peers (pubkey, endpoint, first_seen, last_seen) VALUES (?,?,?,?) "
                "ON CONFLICT(pubkey) DO UPDATE SET last_seen=excluded.last_seen, endpoint=COALESCE(excluded.endpoint, endpoint)",
                (pubkey, endpoint, now, now),
            )

    def peer_outcome(
        self, pubkey: str, *, ok: bool, now: float, result: bool = False, mismatch: bool = False
    ) -> None:
        """Count a step success/failure, a verified result, or a mismatch against ``pubkey``."""
        self.peer_seen(pubkey, None, now=now)
        col = "successes" if ok else "failures"
        with self._tx() as db:
            db.execute(
                f"UPDATE peers SET {col}={col}+1, results=results+?, mismatches=mismatches+? WHERE pubkey=?",
                (int(result or mismatch), int(mismatch), pubkey),
            )

    def peer(self, pubkey: str) -> PeerRecord | None:
        row = self._run("SELECT * FROM peers WHERE pubkey=?", (pubkey,)).fetchone()
        return None if row is None else PeerRecord(*row)

    def reputation(self, pubkey: str) -> float:
        rec = self.peer(pubkey)
        return 1.0 if rec is None else rec.score()

    def content_add(self, cid: str, size: int, *, pinned: bool, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO content VALUES (?,?,?,?)", (cid, size, int(pinned), now)
            )

    def content_list(self) -> list[tuple[str, int, bool]]:
        return [
            (r[0], r[1], bool(r[2]))
            for r in self._run("SELECT cid, size, pinned FROM content ORDER BY cid").fetchall()
        ]

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close (spec/node.md §Logs and shutdown)."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"state database {self.path}: {exc}") from exc
