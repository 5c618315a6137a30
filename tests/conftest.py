"""Shared pytest configuration.

Hypothesis runs a bounded number of examples with no deadline (the CI machines are shared and
slow; timing belongs in benchmarks/, not in tests).
"""

import os
from pathlib import Path

# Triton reads TRITON_INTERPRET once, when it is first imported, and transformers' modeling code
# imports triton; so the interpreter must be chosen before any test module is collected. Without an
# NVIDIA device the kernels can only run interpreted (on CPU tensors).
if not Path("/dev/nvidiactl").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "infernet",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("infernet")
