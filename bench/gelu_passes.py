"""Forward + backward time of one training step's GELUs: Keras's layer against the fused one.

    python -m bench.gelu_passes [--rounds 2]

Times, at batch 1,024, each activation shape of the `fast` net (the whitening stage in float32,
the conv groups in bfloat16) through Keras's `Activation("gelu")` computed in float32 (with the
casts that cost under mixed_bfloat16) and through `training.layers.Gelu` in training mode (one
XLA kernel each way), and sums them per step. Prints the CPU beside the figures.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from runtime.cpu import describe_cpu

# (shape, dtype, activations of that shape per step): whiten_act, then two per conv group
SHAPES = (
    ((1024, 31, 31, 24), "float32", 1),
    ((1024, 15, 15, 64), "bfloat16", 2),
    ((1024, 7, 7, 256), "bfloat16", 2),
    ((1024, 3, 3, 256), "bfloat16", 2),
)


def time_ms(activation, x, repeats: int = 10) -> float:
    """Median milliseconds of forward + backward through `activation` at `x`."""
    import tensorflow as tf

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(activation(x), tf.float32))
        return tape.gradient(loss, x)

    step(x), step(x)  # trace, compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(x).numpy()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    import keras
    import tensorflow as tf

    from training.layers import Gelu

    ap = argparse.ArgumentParser(
        prog="python -m bench.gelu_passes", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    keras_gelu = keras.layers.Activation("gelu", dtype="float32")  # the layer used before
    fused = Gelu()
    print(describe_cpu())
    for round_ in range(1, args.rounds + 1):
        totals = {"keras": 0.0, "fused": 0.0}
        for shape, dtype, count in SHAPES:
            x = tf.cast(tf.random.normal(shape), dtype)
            cells = {
                "keras": time_ms(lambda v: tf.cast(keras_gelu(v), v.dtype), x),
                "fused": time_ms(lambda v: fused(v, training=True), x),
            }
            for name, ms in cells.items():
                totals[name] += count * ms
            print(f"  round {round_} {shape} {dtype}: Keras {cells['keras']:.1f} ms, "
                  f"fused {cells['fused']:.1f} ms")  # fmt: skip
        print(f"round {round_}, per step: Keras {totals['keras']:.0f} ms, "
              f"fused {totals['fused']:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
