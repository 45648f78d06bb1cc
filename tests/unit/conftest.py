"""Unit tier: hypothesis profiles and the fuzzing tally.

Profiles (``HYPOTHESIS_PROFILE=...``):

* ``quick`` (the default): a few hundred examples per property, the whole
  fuzz file in a few seconds;
* ``robust``: 25 times more (``HYPOTHESIS_PROFILE=robust pytest
  tests/unit/test_fuzz_pillar.py``, what ``make test-robust`` runs);
* ``ci``: like quick, derandomised so a CI run is reproducible.

At the end of a run that fuzzed, the terminal summary says how many pillars
were tried, how many were rejected and how many rendered.
"""

import collections
import os

import pytest
from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
    "print_blob": True,
}
settings.register_profile("quick", max_examples=100, **_COMMON)
settings.register_profile("ci", max_examples=100, derandomize=True, **_COMMON)
settings.register_profile("robust", max_examples=2500, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

#: what the fuzz tests tried: {"tried": n, "rejected": n, "rendered": n, ...}
FUZZ_TALLY = collections.Counter()


def pytest_terminal_summary(terminalreporter):
    if FUZZ_TALLY:
        parts = ", ".join(f"{key} {value}" for key, value in sorted(FUZZ_TALLY.items()))
        profile = os.environ.get("HYPOTHESIS_PROFILE", "quick")
        terminalreporter.write_line(f"pillar fuzzing ({profile}): {parts}")


@pytest.fixture(scope="session")
def fuzz_tally():
    """The run's :data:`FUZZ_TALLY` (a Counter the fuzz tests add to)."""
    return FUZZ_TALLY
