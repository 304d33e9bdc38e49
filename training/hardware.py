"""What CPU this is, and which precision trains fastest on it.

Measured here: with AMX tiles, `mixed_bfloat16` trains ~2.5x faster than float32; with only
AVX512-BF16, TF's bfloat16 convolutions run ~2x *slower* than float32. So `auto` picks
bfloat16 only when the CPU has AMX (or, with `auto-measure`, when a short timing says so).
"""

from __future__ import annotations

import os
import platform
import time
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


def describe_cpu() -> str:
    """One line printed beside every figure (training, benchmarks), AMX stated either way."""
    info = cpu_info()
    amx = "" if "amx_tile" in info["flags"] else ", no AMX"
    return (
        f"{info['model']}, {info['cores']} cores, flags: {' '.join(info['flags']) or 'none'}{amx}"
    )


def choose_precision(requested: str) -> str:
    """`auto` -> mixed_bfloat16 on AMX CPUs, float32 elsewhere; `auto-measure` times both."""
    if requested in ("float32", "mixed_bfloat16"):
        return requested
    if requested == "auto":
        return "mixed_bfloat16" if "amx_tile" in cpu_info()["flags"] else "float32"
    if requested == "auto-measure":
        return _measure_faster_precision()
    raise ValueError(
        f"unknown precision {requested!r}: auto, auto-measure, float32, mixed_bfloat16"
    )


def _measure_faster_precision() -> str:
    """Time a 3x3 conv forward+backward (the bulk of training) in both precisions."""
    import tensorflow as tf

    timings = {}
    for name, dtype in (("float32", tf.float32), ("mixed_bfloat16", tf.bfloat16)):
        x = tf.random.normal([256, 16, 16, 128], dtype=dtype)
        k = tf.Variable(tf.random.normal([3, 3, 128, 128], dtype=dtype))

        @tf.function
        def step(x=x, k=k):
            with tf.GradientTape() as tape:
                y = tf.nn.conv2d(x, k, 1, "SAME")
                loss = tf.reduce_sum(tf.cast(y, tf.float32))
            return tape.gradient(loss, k)

        step()
        start = time.perf_counter()
        for _ in range(5):
            step()
        timings[name] = time.perf_counter() - start
    return min(timings, key=timings.get)
