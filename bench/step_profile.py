"""Where a training step's time goes: TensorFlow's profiler over a few real steps, by op kind.

    python -m bench.step_profile [--recipe fast] [--precision mixed_bfloat16] [--steps 3] [--by-op]
        [--filter-grad auto|kernel|matmuls]

Builds the recipe's Trainer on 10,240 training images of the data set, runs warm-up steps,
times `--timed` steps without the profiler, then traces `--steps` steps and sums the traced op
time per kind (conv, GELU, BatchNorm, matmul, cast, pooling, other). Op times are wall times
of each kernel on its executor thread, so with two executor threads their sum can exceed the
step time; the shares are what to compare. `--by-op` splits the two catch-all kinds: "other"
by op type, "cast" by the cast's name (which says what it casts).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime.cpu import describe_cpu
from training.config import RECIPES, default_data
from training.hardware import FILTER_GRADS, choose_filter_grad

SUBSET = 10_240  # 10 steps at batch 1024, more at smaller ones: enough distinct batches
KINDS = (  # (kind, test on "layer/op name:OpType"), first match wins
    ("conv", lambda name, op: "Conv" in op),
    ("GELU", lambda name, op: "Gelu" in name or "_act" in name),
    ("BatchNorm", lambda name, op: "BatchNorm" in op or "_bn" in name),
    ("matmul (Muon, head)", lambda name, op: "MatMul" in op),
    ("cast", lambda name, op: op == "Cast"),
    ("pooling", lambda name, op: "Pool" in op),
)
# The only XLA code in a training step is the fused GELU (training.layers.Gelu). Its kernels
# are traced under XLA's own names (fusions), each inside one event of this name.
XLA_RUN = "CpuExecutable::ExecuteAsyncOnStream"


def op_kind(event_name: str, by_op: bool = False) -> str | None:
    """The kind of a traced TF op event ("scope/op:OpType"), None for non-op events."""
    if event_name == XLA_RUN:
        return "GELU"
    if ":" not in event_name or "::" in event_name:  # e.g. ExecutorState::Process
        return None
    name, op = event_name.rsplit(":", 1)
    kind = next((kind for kind, test in KINDS if test(name, op)), "other")
    if by_op and kind in ("other", "cast"):
        return f"{kind}: {op if kind == 'other' else name}"
    return kind


def traced_op_ms(xplane_file: Path, by_op: bool = False) -> collections.Counter:
    """Milliseconds of traced kernel time per op kind, over the whole trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(xplane_file.read_bytes())
    totals: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # executor threads run the kernels
                continue
            for event in line.events:
                kind = op_kind(plane.event_metadata[event.metadata_id].name, by_op)
                if kind:
                    totals[kind] += event.duration_ps / 1e9
    return totals


def profile(
    recipe_name: str,
    precision: str,
    data: str,
    steps: int,
    timed: int,
    by_op: bool = False,
    filter_grad: str = "kernel",
) -> dict:
    import tensorflow as tf

    from training.data import load_dataset
    from training.models import precision_policy
    from training.trainer import Trainer

    ds = load_dataset(data).subset(SUBSET, 1000, seed=0)
    with precision_policy(precision), tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            RECIPES[recipe_name], ds, Path(tmp) / "run", 0, log=lambda _: None,
            filter_grad=filter_grad,
        )  # fmt: skip
        perm = np.random.default_rng(0).permutation(len(trainer.train.labels))
        batches = itertools.count()

        def run(n: int) -> None:
            for _ in range(n):
                trainer._one_step(perm, next(batches) % trainer.steps_per_epoch)

        run(2)  # trace and warm up
        start = time.perf_counter()
        run(timed)
        step_s = (time.perf_counter() - start) / timed
        tf.profiler.experimental.start(tmp + "/trace")
        run(steps)
        tf.profiler.experimental.stop()
        trace = next(Path(tmp, "trace").rglob("*.xplane.pb"))
        per_step = {k: v / steps for k, v in traced_op_ms(trace, by_op).items()}
    return {
        "step_ms": step_s * 1000,
        "batch": trainer.batch_size,
        "images_s": trainer.batch_size / step_s,
        "ops": per_step,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench.step_profile", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--data", default=default_data())
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--precision", default="mixed_bfloat16")
    ap.add_argument("--steps", type=int, default=3, help="steps traced")
    ap.add_argument("--timed", type=int, default=5, help="steps timed without the profiler")
    ap.add_argument("--by-op", action="store_true", help='split "other" and "cast" by op')
    ap.add_argument("--filter-grad", default="auto", choices=FILTER_GRADS)
    a = ap.parse_args(argv)
    filter_grad, why = choose_filter_grad(a.filter_grad, a.precision, RECIPES[a.recipe].arch)
    result = profile(a.recipe, a.precision, a.data, a.steps, a.timed, a.by_op, filter_grad)
    total = sum(result["ops"].values())
    print(f"{describe_cpu()}")
    print(
        f"{a.recipe}, {a.precision}, filter gradients {filter_grad} ({why}): "
        f"{result['step_ms']:.0f} ms per step of {result['batch']} "
        f"({result['images_s']:.0f} images/s, untraced); traced op time per step:"
    )
    width = max(map(len, result["ops"]), default=0)
    for kind, ms in sorted(result["ops"].items(), key=lambda kv: -kv[1]):
        print(f"  {kind:{width}s} {ms:7.0f} ms  {100 * ms / total:5.1f} %")


if __name__ == "__main__":
    main()
