"""SQLite state (spec/node.md §Local state): transitions, terminal states, restart, disk full."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.node.errors import IllegalTransition, StoreError
from infernet_ref.node.jobstate import TERMINAL, TRANSITIONS, JobState
from infernet_ref.node.store import Store

PK = "ab" * 32


def new(store: Store, job: str = "j-00000001") -> None:
    store.create_job(
        job,
        role="aggregator",
        owner=PK,
        model="bafkqaaa",
        params={"max_new_tokens": 4},
        now=1.0,
        inputs={"prompt_ids": [1, 2]},
    )


def test_lifecycle_and_event_log(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.sqlite3")
    new(s)
    s.transition(
        "j-00000001",
        "aggregator",
        JobState.PLANNED,
        now=2.0,
        plan={"strategy": "single", "replicas": []},
    )
    s.transition("j-00000001", "aggregator", JobState.RUNNING, now=3.0)
    s.update_job("j-00000001", "aggregator", now=3.5, output=[5, 6])
    rec = s.transition(
        "j-00000001", "aggregator", JobState.COMPLETED, now=4.0, output_sha256="00" * 32
    )
    assert rec.terminal
    assert rec.output == [5, 6]
    assert rec.inputs == {"prompt_ids": [1, 2]}
    assert [e[1] for e in s.events("j-00000001", "aggregator")] == [
        "queued",
        "planned",
        "running",
        "completed",
    ]


def test_terminal_states_are_final_and_refusal_changes_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    new(s)
    s.transition("j-00000001", "aggregator", JobState.CANCELLED, now=2.0)
    with pytest.raises(IllegalTransition):
        s.transition("j-00000001", "aggregator", JobState.RUNNING, now=3.0, error="x")
    rec = s.get_job("j-00000001", "aggregator")
    assert rec.state is JobState.CANCELLED
    assert rec.error is None
    assert len(s.events("j-00000001", "aggregator")) == 2


def test_duplicate_and_unknown_jobs(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    new(s)
    with pytest.raises(StoreError):
        new(s)
    with pytest.raises(StoreError):
        s.transition("nope-0000", "aggregator", JobState.FAILED, now=1.0)
    assert s.find_job("nope-0000", "aggregator") is None


def test_state_survives_a_killed_process(tmp_path: Path) -> None:
    db = tmp_path / "db"
    code = f"""
import os
from infernet_ref.node.store import Store
from infernet_ref.node.jobstate import JobState
s = Store({str(db)!r})
s.create_job('j-00000009', role='aggregator', owner={PK!r}, model='bafkqaaa', params={{}}, now=1.0)
s.transition('j-00000009', 'aggregator', JobState.PLANNED, now=2.0)
s.peer_outcome({PK!r}, ok=True, now=2.0)
os._exit(9)  # no close, no checkpoint: like SIGKILL
"""
    proc = subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    assert proc.returncode == 9
    s = Store(db)
    assert s.get_job("j-00000009", "aggregator").state is JobState.PLANNED
    assert s.peer(PK).successes == 1  # type: ignore[union-attr]


def test_disk_full_is_a_store_error_and_keeps_committed_state(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    new(s)
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count={pages}")

    def fill() -> None:
        for i in range(200):
            params = {"pad": "x" * 4000}
            s.create_job(
                f"j-big-{i:04d}",
                role="aggregator",
                owner=PK,
                model="bafkqaaa",
                params=params,
                now=1.0,
            )

    with pytest.raises(StoreError, match="full"):
        fill()
    s._db.execute("PRAGMA max_page_count=1073741823")
    assert s.get_job("j-00000001", "aggregator").state is JobState.QUEUED


def test_corrupt_file_is_a_store_error(tmp_path: Path) -> None:
    p = tmp_path / "db"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        Store(p)


def test_reputation_counts(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    assert s.reputation(PK) == 1.0
    for ok in (True, True, True, False):
        s.peer_outcome(PK, ok=ok, now=1.0)
    s.peer_outcome(PK, ok=True, now=1.0, result=True)
    s.peer_outcome(PK, ok=True, now=1.0, mismatch=True)
    rec = s.peer(PK)
    assert rec is not None
    assert (rec.successes, rec.failures, rec.results, rec.mismatches) == (5, 1, 2, 1)
    assert s.reputation(PK) == pytest.approx(5 / 6 * 0.5)


def test_close_checkpoints_wal(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    new(s)
    s.close()
    assert not (tmp_path / "db-wal").exists() or (tmp_path / "db-wal").stat().st_size == 0
    assert sqlite3.connect(tmp_path / "db").execute("SELECT count(*) FROM jobs").fetchone()[0] == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(JobState)), max_size=12))
def test_any_transition_sequence_matches_the_table(seq: list[JobState]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        s = Store(Path(d) / "db")
        new(s)
        state = JobState.QUEUED
        for target in seq:
            if target in TRANSITIONS[state]:
                state = s.transition("j-00000001", "aggregator", target, now=1.0).state
            else:
                with pytest.raises(IllegalTransition):
                    s.transition("j-00000001", "aggregator", target, now=1.0)
            assert s.get_job("j-00000001", "aggregator").state is state
        assert (state in TERMINAL) == s.get_job("j-00000001", "aggregator").terminal
        s.close()
