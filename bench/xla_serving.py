"""Would XLA make the served model faster? Its `pixels` signature beside the same folded net
as a `tf.function`, without and with `jit_compile=True`, at batch 1, 32 and 256.

    python -m bench.xla_serving --run-dir runs/bench-fast-s11-0 --model models/cifar10/4

Prints the median latency per batch size, two rounds, and how far the XLA logits are from the
plain ones. The real server runs XLA-marked functions only with --xla_cpu_compilation_enabled,
so XLA would have to pay for that (docs/BENCHMARKS.md, "XLA for the served graph").
"""

from __future__ import annotations

import argparse
import statistics
import time

from export.config import DEFAULT_BASE_PATH, PIXELS_SIGNATURE
from training.config import DEFAULT_RUN_DIR

CALLS = {1: 300, 32: 30, 256: 6}  # timed calls per batch size, after warm-up


def median_seconds(fn, images, calls: int) -> float:
    for _ in range(10 if len(images) == 1 else 2):
        fn(images).numpy()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(images).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.xla_serving", description=__doc__)
    ap.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help="a finished `fast` run")
    ap.add_argument("--model", default=str(DEFAULT_BASE_PATH), help="base path or version")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)

    from runtime.tf_startup import import_tensorflow

    import_tensorflow()
    import numpy as np
    import tensorflow as tf

    from export.publish import saved_model_dir
    from runtime.cpu import describe_cpu
    from training.inference import make_logits_fn
    from training.run_model import load_for_inference

    folded = load_for_inference(args.run_dir, served=True)[0]
    served = tf.saved_model.load(str(saved_model_dir(args.model))).signatures[PIXELS_SIGNATURE]
    variants = {
        "savedmodel": lambda x: served(images=x)["probabilities"],
        "tf.function": make_logits_fn(folded, tta=1),  # the served graph's flip TTA
        "xla": make_logits_fn(folded, tta=1, jit_compile=True),
    }
    print(f"cpu: {describe_cpu()}")
    rng = np.random.default_rng(0)
    for round_ in range(1, args.rounds + 1):
        for batch, calls in CALLS.items():
            images = tf.constant(rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8))
            for name, fn in variants.items():
                seconds = median_seconds(fn, images, calls)
                print(
                    f"round {round_} batch {batch:3d} {name:11s} p50 {seconds * 1e3:7.2f} ms "
                    f"{batch / seconds:6.0f} images/s",
                    flush=True,
                )
    plain = variants["tf.function"](images).numpy()
    print(f"max |XLA - plain| logits: {np.abs(variants['xla'](images).numpy() - plain).max():.1e}")


if __name__ == "__main__":
    main()
