"""Memory of a running process, read from /proc: what the proxy and soak benchmarks record."""

from __future__ import annotations

from pathlib import Path


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (from /proc; OSError once it is gone)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mb(pid: int) -> float:
    """Proportional set size in MB: the process's private pages plus its share of those it
    shares. Summed over a gunicorn master and its workers it counts the shared libraries once,
    where summed RSS counts them once per process, and grows as workers touch more of them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")
