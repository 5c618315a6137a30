"""Human-readable summary of a demo report (the ``--json`` form is the report itself)."""

from __future__ import annotations

import textwrap
from typing import Any

MARK = {True: "yes", False: "NO"}


def _line(label: str, value: object) -> str:
    return f"  {label:<24} {value}"


def format_report(report: dict[str, Any]) -> str:
    """Render the report as the summary ``infernet demo`` prints."""
    out = ["", "=== infernet local swarm demo: summary ==="]
    model = report.get("model") or {}
    if model:
        out.append(
            _line("model", f"{model.get('cid')} ({model.get('bytes')} bytes, content-addressed)")
        )
    nodes = report.get("nodes") or {}
    for name, n in nodes.items():
        where = f"layers {n['layers']} on {n['devices']} device(s)" if "layers" in n else n["role"]
        out.append(_line(f"node {name}", f"{n['role']:<10} {n['pubkey'][:16]}…  {where}"))
    for name, f in (report.get("fetched") or {}).items():
        out.append(
            _line(
                f"fetched by {name}",
                f"layers {f.get('layers')}: {f.get('tensor_bytes')} "
                f"tensor bytes by CID in {f.get('seconds')} s",
            )
        )
    if "dht_joined" in report:
        joined = report["dht_joined"]
        out.append(
            _line("DHT", f"{len(joined)} nodes joined via the bootstrap node: {', '.join(joined)}")
        )
    if report.get("plan_text"):
        out.append(_line("plan", report["plan_text"]))
    if report.get("prompt") is not None:
        out.append(_line("prompt", repr(report["prompt"])))
    output = report.get("output")
    if output:
        text = textwrap.fill(repr(output["text"]), 90, subsequent_indent=" " * 27)
        out.append(_line("output", text))
    expected = report.get("expected")
    if expected:
        text = textwrap.fill(repr(expected["text"]), 90, subsequent_indent=" " * 27)
        out.append(_line("oracle (transformers)", text))
    fault = report.get("fault")
    if fault:
        out.append(
            _line(
                "fault injected", f"SIGKILL {fault['killed']} after {fault['after_tokens']} tokens"
            )
        )
    for ev in report.get("recovery") or []:
        if ev.get("event") == "driver.reroute":
            out.append(
                _line(
                    "recovery",
                    f"replica {ev.get('replica')} stage {ev.get('stage')} -> "
                    f"{ev.get('to')}, replayed {ev.get('replay_tokens')} tokens "
                    f"(history from {ev.get('replay_from', '?')})",
                )
            )
    job = report.get("job") or {}
    if job:
        ver = job.get("verification") or {}
        out.append(
            _line(
                "job state",
                f"{job.get('state')} in {job.get('seconds')} s, reroutes {job.get('reroutes')}",
            )
        )
        out.append(
            _line("verification", f"{ver.get('verdict')} over {ver.get('redundancy')} replicas")
        )
        out.append(_line("client record", f"{report.get('client_record')} (client's own SQLite)"))
        out.append(_line("providers used", ", ".join(report.get("providers_used") or [])))
    for name, ok in (report.get("checks") or {}).items():
        out.append(_line(f"check {name}", MARK[bool(ok)]))
    clean = report.get("cleanup") or {}
    if clean:
        out.append(
            _line(
                "cleanup",
                f"{clean.get('processes_left')} processes and "
                f"{clean.get('containers_left')} worker containers left",
            )
        )
    if report.get("error"):
        out.append(_line("ERROR", report["error"]))
    out.append(_line("result", "OK" if report.get("ok") else "FAILED"))
    return "\n".join(out)
