"""Which precision, and which filter-gradient form, trains fastest on this CPU.

The answer differs between machines that print the same flags: with AMX tiles,
`mixed_bfloat16` trained ~2.5x faster than float32 (the project brief's figure; issue 10's
is a 4096^3 matmul 3.9x faster in bfloat16; on this project's one AMX host, bfloat16
convolutions ran 2.3-2.6x float32 and matmuls 3.5x, docs/BENCHMARKS.md). Without AMX, issue 10
reports TF's bfloat16 convolutions ~2x *slower* than float32 on one AVX512-BF16 machine; on
this project's, a convolution measured 1.26x slower in one session and training 1.31x
*faster* in later ones (docs/BENCHMARKS.md). So `auto` takes bfloat16 on AMX and otherwise
times a convolution forward + backward in both precisions, a few seconds before training
starts.
"""

from __future__ import annotations

import time

from runtime import cpu

PRECISIONS = ("auto", "float32", "mixed_bfloat16")


def choose_precision(requested: str) -> tuple[str, str]:
    """(precision, why): `auto` -> mixed_bfloat16 with AMX, else whichever times faster."""
    if requested in ("float32", "mixed_bfloat16"):
        return requested, "asked for"
    if requested != "auto":
        raise ValueError(f"unknown precision {requested!r}: {', '.join(PRECISIONS)}")
    if cpu.has_amx():
        return "mixed_bfloat16", "auto: the CPU has AMX"
    timings = time_conv_step()
    fastest = min(timings, key=timings.get)
    measured = ", ".join(f"{name} {seconds * 1e3:.0f} ms" for name, seconds in timings.items())
    return fastest, f"auto: 5 steps of a 3x3 conv forward+backward took {measured}"


FILTER_GRADS = ("auto", "kernel", "matmuls")


def choose_filter_grad(requested: str, precision: str, arch: str = "fast") -> tuple[str, str]:
    """(form, why) of the wide convs' filter gradients: `auto` -> "matmuls" (nine matmuls,
    training.layers.Conv2D) in bfloat16 on an AMX CPU with no GPU, where it made a training
    step about a tenth faster; else TensorFlow's own kernel, which was faster in float32 here
    and which a GPU's cuDNN is tuned for. Only the `fast` net has the matmul form."""
    if requested not in FILTER_GRADS:
        raise ValueError(f"unknown filter gradient {requested!r}: {', '.join(FILTER_GRADS)}")
    if arch != "fast":
        return "kernel", f"the {arch} net has only TensorFlow's"
    if requested != "auto":
        return requested, "asked for"
    if precision != "mixed_bfloat16" or not cpu.has_amx():
        return "kernel", "auto: nine matmuls are measured faster only in bfloat16 on AMX"
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "kernel", "auto: a GPU is visible"
    return "matmuls", "auto: bfloat16 on an AMX CPU"


def time_conv_step() -> dict[str, float]:
    """Seconds for 5 steps of a 3x3 conv forward+backward (the bulk of training), per precision."""
    import tensorflow as tf

    return {
        name: 5 * conv_step_seconds(dtype, batch=256, size=16, channels=128, repeats=5)
        for name, dtype in (("float32", tf.float32), ("mixed_bfloat16", tf.bfloat16))
    }


def conv_step_seconds(
    dtype,
    batch: int,
    size: int,
    channels: int,
    repeats: int,
    input_grad: bool = False,
    min_seconds: float = 0.0,
    matmul_filter_grad: bool = False,
) -> float:
    """Mean seconds of one 3x3 SAME conv forward + backward (filter gradient, and the input's
    with `input_grad`) on [batch, size, size, channels], after one warm-up call; the filter
    gradient as nine matmuls with `matmul_filter_grad`, as training.layers.Conv2D can train.

    The one conv timing both `auto` precision and bench.train's ceiling rely on.
    """
    import tensorflow as tf

    def conv(x, k):
        if matmul_filter_grad:
            from training.layers import conv3x3_matmul_filter_grad

            return conv3x3_matmul_filter_grad(x, k)
        return tf.nn.conv2d(x, k, 1, "SAME")

    x = tf.Variable(tf.random.normal([batch, size, size, channels], dtype=dtype))
    k = tf.Variable(tf.random.normal([3, 3, channels, channels], dtype=dtype) * 0.01)
    wrt = [x, k] if input_grad else [k]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(conv(x, k), tf.float32))
        return tape.gradient(loss, wrt)

    return seconds_per_call(step, repeats, min_seconds)


def seconds_per_call(fn, repeats: int, min_seconds: float = 0.0) -> float:
    """Mean seconds of `fn()` over at least `repeats` calls and `min_seconds`, after one call
    to compile and warm up. A ceiling timed over a second or two read low on a noisy host."""
    fn()
    calls = 0
    start = time.perf_counter()
    while calls < repeats or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls
