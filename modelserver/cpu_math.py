"""The arithmetic oneDNN may use for the served model's float32 convolutions and matmuls.

On a CPU with AMX, oneDNN's bfloat16 math mode runs them on the AMX tiles (inputs rounded to
bfloat16, sums kept in float32): on one such 2-core machine the shipped model answered a
single image in 2.8 ms instead of 3.7, ran 37 % more images a second at batch 256, and scored
90.99 % instead of 91.01 % on the 10,000 test images (docs/BENCHMARKS.md, "oneDNN's bfloat16
math on an AMX host"). Without AMX, bfloat16 convolutions measured slower than float32 on the
machines of this project, so the mode stays strict there.

The choice is oneDNN's own environment variable, read when TensorFlow first runs an op, so it
must be set before then; a value the user set is always kept (`STRICT` turns the mode off).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from runtime.cpu import cpu_info, has_amx  # the CPU facts every figure prints

FPMATH_ENV = "ONEDNN_DEFAULT_FPMATH_MODE"


def choose_fpmath(environ: MutableMapping[str, str], flags: list[str]) -> tuple[str, str]:
    """(mode, why), setting FPMATH_ENV in `environ` when the CPU has AMX and it is unset."""
    if environ.get(FPMATH_ENV):
        return environ[FPMATH_ENV], f"{FPMATH_ENV} set"
    if has_amx(flags):
        environ[FPMATH_ENV] = "BF16"
        return "BF16", f"the CPU has AMX; {FPMATH_ENV}=STRICT turns it off"
    return "STRICT", "no AMX on this CPU"


def apply_fpmath() -> str:
    """Chooses the mode for this process (and the processes it starts); a line for the log."""
    mode, why = choose_fpmath(os.environ, cpu_info()["flags"])
    return f"oneDNN float32 math: {mode} ({why})"
