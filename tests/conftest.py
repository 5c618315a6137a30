"""Shared pytest configuration.

Hypothesis runs a bounded number of examples with no deadline (the CI machines are shared and
slow; timing belongs in benchmarks/, not in tests).
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "infernet",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("infernet")
