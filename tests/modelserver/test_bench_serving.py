"""`python -m bench.serving --quick` runs end to end against a real server and reports every cell.

The benchmark is the only producer of the model server's figures in docs/BENCHMARKS.md; this
keeps it from rotting between the (manual, minutes-long) real runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_quick_benchmark_reports_every_cell_without_failures(tiny_model_base):
    cmd = [
        sys.executable, "-m", "bench.serving", "--quick", "--clients", "1,4",
        "--model_base_path", str(tiny_model_base),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for row in (
        "| gRPC pixels |",
        "| gRPC serving_default |",
        "| gRPC (asyncio client) pixels |",
        "| REST pixels |",
        "| REST serving_default |",
        "| 1 |",
        "| 4 |",
    ):
        assert row in out, out
    assert "In-process ceiling (pixels): batch 256" in out
    assert "Failed requests: 0" in out
