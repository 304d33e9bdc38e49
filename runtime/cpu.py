"""What CPU this is: the line every measured figure prints beside it (training, export,
evaluation, the benchmarks) and the AMX test that the precision and math choices turn on."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

INTERESTING_FLAGS = ("amx_tile", "amx_bf16", "avx512_bf16", "avx512_vnni", "avx512f", "avx2", "fma")


@cache
def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    return {
        "model": model,
        "cores": os.cpu_count(),
        "flags": [f for f in INTERESTING_FLAGS if f in flags],
    }


def has_amx(flags: list[str] | None = None) -> bool:
    """Whether the CPU (of `flags`, or this one) has AMX tiles: with them bfloat16 runs 2.3-3.5x
    float32 here; without, it measured slower (training/hardware.py says more)."""
    return "amx_tile" in (cpu_info()["flags"] if flags is None else flags)


def describe_cpu() -> str:
    """One line printed beside every figure (training, benchmarks), AMX stated either way."""
    info = cpu_info()
    amx = "" if has_amx(info["flags"]) else ", no AMX"
    return (
        f"{info['model']}, {info['cores']} cores, flags: {' '.join(info['flags']) or 'none'}{amx}"
    )
