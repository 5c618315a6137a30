#!/usr/bin/env bash
# GPU check: runs the CUDA paths of the runtime and the Triton kernels once, logs into a folder.
#
#   scripts/gpu_check.sh [--dry] [OUTDIR]       (OUTDIR: $OUT, else /tmp/gpu-check-out)
#
# Steps (each under its own `timeout`; a failing step does not stop the next ones):
#   1 env           nvidia-smi, python/torch/triton/transformers versions, device name, a tiny
#                   compiled Triton launch                                      -> 1-env.log
#   2 kernels       tests/kernels with INFERNET_TEST_DEVICE=cuda: the same tests as CI, but the
#                   kernels compiled and run on CUDA tensors (fp32/fp16/bf16)    -> 2-kernels.log
#   3 runtime       tests/runtime/test_runtime_device.py on CUDA: engine vs transformers (greedy
#                   tokens, fp32 logits, bf16/fp16 tracking, preemption, >512-token split-mode
#                   paged attention), with the Triton kernels counted as used   -> 3-runtime.log
#   4 bench-kernels benchmarks/bench_kernels.py --dtype bf16 -> 4-bench-kernels.log, kernels.json
#   5 bench-runtime benchmarks/bench_runtime.py --device cuda --dtype bfloat16 against
#                   transformers in the same run          -> 5-bench-runtime.log, runtime.json
# summary.txt lists each step's exit status; the script exits 1 if any step failed.
# Without CUDA every step still runs and says so (tests skip with a reason, benchmarks print why);
# the script then exits 3, or 0 with --dry (which only checks the script itself).
#
# Python: $PYTHON, else ./.venv/bin/python, else python3. The repo need not be installed:
# PYTHONPATH gets the repo root, generated/, kernels/ and conformance/. pytest runs with its own
# small ini (not pyproject's, whose asyncio_mode/--strict-config need pytest-asyncio), without
# -x so that one run lists every failure, and with pytest-xdist (-n 8) when present.
# Local imitation of the device image: GPU_CHECK_BLOCK="pydantic jsonschema ..." makes those
# imports fail; GPU_CHECK_PYTEST_ARGS adds pytest options (e.g. "-p no:asyncio").
set -u
set -o pipefail

DRY=0
if [[ "${1:-}" == "--dry" ]]; then
    DRY=1
    shift
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
OUTDIR="${1:-${OUT:-${TMPDIR:-/tmp}/gpu-check-out}}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"

if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then
    PY="$ROOT/.venv/bin/python"
else
    PY="python3"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
export PYTHONPATH="$ROOT:$ROOT/generated:$ROOT/kernels:$ROOT/conformance${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n "${GPU_CHECK_BLOCK:-}" ]]; then
    mkdir -p "$WORK/block"
    cat >"$WORK/block/sitecustomize.py" <<EOF
import importlib.abc, sys
_BLOCKED = set("${GPU_CHECK_BLOCK}".split())
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ImportError(f"{name} is blocked (GPU_CHECK_BLOCK)")
        return None
sys.meta_path.insert(0, _Block())
EOF
    export PYTHONPATH="$WORK/block:$PYTHONPATH"
fi
export PYTHONUNBUFFERED=1
export INFERNET_TEST_DEVICE=cuda
export TRITON_CACHE_DIR="$WORK/triton-cache"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset TRITON_INTERPRET

cat >"$WORK/pytest.ini" <<'EOF'
[pytest]
addopts = -ra --strict-markers --durations=10
markers =
    slow: long-running
    interop: talks to a third-party implementation
    docker: needs a reachable Docker daemon
timeout = 240
xfail_strict = true
filterwarnings =
    default
EOF
PYTEST=("$PY" -m pytest -c "$WORK/pytest.ini" --rootdir="$ROOT" --confcutdir="$ROOT"
    -q -p no:cacheprovider --maxfail=40)
# shellcheck disable=SC2206
EXTRA=(${GPU_CHECK_PYTEST_ARGS:-})
XDIST=()
if "$PY" -c 'import xdist' >/dev/null 2>&1; then
    XDIST=(-n 8)
fi

SUMMARY="$OUTDIR/summary.txt"
: >"$SUMMARY"
FAILED=0
step() { # step NAME LOGFILE TIMEOUT_S CMD...
    local name="$1" log="$OUTDIR/$2" limit="$3"
    shift 3
    echo "=== [$name] $* (timeout ${limit}s)" | tee "$log"
    local start=$SECONDS rc
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    local verdict=ok
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        verdict="TIMEOUT"
    elif [[ $rc -ne 0 ]]; then
        verdict="FAILED"
    fi
    [[ $verdict == ok ]] || FAILED=1
    printf '%-14s rc=%-4s %4ss  %s\n' "$name" "$rc" "$((SECONDS - start))" "$verdict" | tee -a "$SUMMARY"
}

HAVE_CUDA=0
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    HAVE_CUDA=1
fi
echo "gpu_check: python=$PY cuda=$HAVE_CUDA out=$OUTDIR xdist=${XDIST[*]:-none}" | tee -a "$SUMMARY"
if [[ $HAVE_CUDA -eq 0 ]]; then
    echo "gpu_check: NO CUDA DEVICE: the steps below only show that they skip cleanly" | tee -a "$SUMMARY"
fi

env_report() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi
    else
        echo "nvidia-smi: not found"
    fi
    ls -l /dev/nvidiactl 2>&1 | head -1
    "$PY" - <<'EOF'
import importlib, importlib.metadata as md, platform, sys
print("python", sys.version.split()[0], sys.executable, platform.machine())
for dist in ("torch", "triton", "transformers", "safetensors", "tokenizers", "numpy",
             "hypothesis", "pytest", "pytest-timeout", "pytest-xdist", "psutil"):
    try:
        print(f"  {dist:<15} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"  {dist:<15} MISSING")
for mod in ("pydantic", "jsonschema", "referencing", "cbor2", "coincurve", "pytest_asyncio"):
    try:
        importlib.import_module(mod)
        print(f"  import {mod}: ok")
    except ImportError as exc:
        print(f"  import {mod}: absent ({exc})")
import torch
print("cuda available:", torch.cuda.is_available(), "| torch.version.cuda:", torch.version.cuda)
if not torch.cuda.is_available():
    sys.exit(0)
props = torch.cuda.get_device_properties(0)
print("device:", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0),
      "| SMs", props.multi_processor_count, "| memory GiB", round(props.total_memory / 2**30, 1))
import infernet_kernels as ik
from infernet_ref.runtime import ops
print("infernet_kernels.available():", ik.available(), "| runtime uses kernels:",
      ops.triton_kernels() is not None)
x = torch.randn(4, 4096, device="cuda", dtype=torch.bfloat16)
w = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
out, ref = ik.rms_norm(x, w, 1e-5), ik.rms_norm_reference(x, w, 1e-5)
err = (out.float() - ref.float()).abs().max().item()
print(f"compiled Triton rms_norm bf16 launch: max|err| vs reference {err:.3g}")
sys.exit(0 if err < 0.05 else 1)
EOF
}

export PY
export -f env_report
# Worst case 40 + 120 + 110 + 80 + 80 s = 7.2 minutes; typically far less.
step env 1-env.log 40 bash -c env_report
step kernels 2-kernels.log 120 "${PYTEST[@]}" "${XDIST[@]}" -m "not slow" "${EXTRA[@]}" tests/kernels
step runtime 3-runtime.log 110 "${PYTEST[@]}" "${XDIST[@]}" "${EXTRA[@]}" \
    tests/runtime/test_runtime_device.py
step bench-kernels 4-bench-kernels.log 80 \
    "$PY" benchmarks/bench_kernels.py --dtype bf16 --json "$OUTDIR/kernels.json"
step bench-runtime 5-bench-runtime.log 80 \
    "$PY" benchmarks/bench_runtime.py --device cuda --dtype bfloat16 --prompt 128 \
    --new-tokens 128 --repeat 3 --json "$OUTDIR/runtime.json"

rm -rf "$WORK"
if [[ $FAILED -ne 0 ]]; then
    echo "gpu_check: SOME STEPS FAILED (see $SUMMARY)" | tee -a "$SUMMARY"
    exit 1
fi
if [[ $HAVE_CUDA -eq 0 && $DRY -eq 0 ]]; then
    echo "gpu_check: no CUDA device, nothing was checked on a GPU (use --dry to accept)" | tee -a "$SUMMARY"
    exit 3
fi
echo "gpu_check: all steps passed" | tee -a "$SUMMARY"
