"""After an unclean stop, jobs the aggregator drove end in a recorded terminal state (spec/node.md)."""

from __future__ import annotations

from pathlib import Path

from infernet_ref.node.aggregator import Aggregator
from infernet_ref.node.jobstate import JobState
from infernet_ref.node.log import JsonLog
from infernet_ref.node.store import Store


async def _no_providers(model: str) -> list[object]:
    return []


async def _no_model(cid: str) -> object:
    raise LookupError(cid)


def test_recover_fails_non_terminal_jobs_and_keeps_terminal_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    for job, path in (
        ("j-running01", [JobState.PLANNED, JobState.RUNNING]),
        ("j-queued001", []),
        ("j-done00001", [JobState.PLANNED, JobState.RUNNING, JobState.COMPLETED]),
    ):
        store.create_job(
            job, role="aggregator", owner="ab" * 32, model="bafkqaaa", params={}, now=1.0
        )
        for st in path:
            store.transition(job, "aggregator", st, now=2.0)
    store.create_job(
        "j-client001", role="client", owner="ab" * 32, model="bafkqaaa", params={}, now=1.0
    )
    store.close()
    store = Store(tmp_path / "state.sqlite3")  # the restarted node
    agg = Aggregator(
        secret_key=b"\x01" * 32,
        store=store,
        log=JsonLog(level="error"),
        directory=_no_providers,
        models=_no_model,
    )  # type: ignore[arg-type]
    assert agg.recover() == 2
    assert store.get_job("j-running01", "aggregator").state is JobState.FAILED
    assert store.get_job("j-running01", "aggregator").error_code == 5000
    assert store.get_job("j-queued001", "aggregator").state is JobState.FAILED
    assert store.get_job("j-done00001", "aggregator").state is JobState.COMPLETED
    assert store.get_job("j-client001", "client").state is JobState.QUEUED  # other roles untouched
    assert agg.recover() == 0
