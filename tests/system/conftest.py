"""System-test fixtures: the whole stack as real processes, and Hypothesis budgets.

`system_stack` is `bench.soak_stack.SoakStack` (the soak run's own stack: model server with
batching, proxy under gunicorn, everything written into one temp folder), started once per
session over a copy of the tiny model from tests/conftest.py.

Fuzz budget: FUZZ_EXAMPLES (default 200 per test), set with the Hypothesis profile in
tests/conftest.py; `make test` replays the same examples every run, FUZZ_RANDOM=1 draws new
ones. The longer run in docs/RELIABILITY.md is
`FUZZ_EXAMPLES=5000 FUZZ_RANDOM=1 pytest tests/system -k fuzz`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.soak_stack import SoakStack


@pytest.fixture(scope="session")
def tiny_base_path(make_tiny_base) -> Path:
    """A base path `<tmp>/cifar10/1` holding the tiny untrained model (seed 1)."""
    return make_tiny_base()


@pytest.fixture(scope="session")
def system_stack(tmp_path_factory, tiny_base_path) -> Iterator[SoakStack]:
    """Model server (batching on) + gunicorn proxy on free loopback ports, for the session."""
    stack = SoakStack(tmp_path_factory.mktemp("system-stack"), tiny_base_path).start()
    yield stack
    stack.stop()
