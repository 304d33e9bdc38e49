"""Benchmark a training recipe against this machine's own arithmetic ceiling.

    python -m bench.train --recipe fast --seed 0 [--run-dir runs/bench-fast-0]

Prints one line: accuracy (plain and TTA), training work in PFLOP, wall time, images/s,
achieved GFLOP/s, the measured ceiling (fastest of five kernels: issue 10's four, a 4096^3
matmul and a 3x3 conv forward+backward, each in float32 and bfloat16, and that bfloat16 conv
with its filter gradient as nine matmuls, as training can run it) and the model-FLOPs
utilisation (also against the four alone), with the CPU model and flags, and appends it as a
row to docs/BENCHMARKS.md.

Work = forward FLOPs per image (convs + dense, counted from the architecture) x 3 x images seen
in training, plus the forward passes of the TTA evaluation (6 per test image at level 2).

The ceiling is measured before the training and again after it (each kernel for 5 s), and again
at each sitting of a run interrupted and resumed; the run folder keeps every measurement
(bench-ceilings.json) and the MFU is taken against the highest of them, so a measurement that
happened to read slow cannot flatter the figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from datetime import date
from pathlib import Path

from runtime.cli_args import non_empty
from training.run_folder import BENCH_CEILINGS, is_finished, read_meta
from training.train import add_recipe_arguments

ROW_HEADER = (
    "| date | recipe | seed | precision | plain | TTA | work PFLOP | train s | wall s | img/s "
    "| GFLOP/s | ceiling GFLOP/s | MFU | CPU |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
)
TABLE_MARK = "<!-- bench/train.py rows -->"


# Each reference kernel is timed for this long (a 1 s timing read as low as 392 GFLOP/s where
# this machine's median is 500, and a low ceiling flatters the MFU).
CEILING_SECONDS = 5.0
CEILING_CONV = (512, 8, 256)  # batch, side, channels of the 3x3 conv kernel (issue 10)
CEILING_MATMUL = 4096  # the side of issue 10's square matmul
# The fifth kernel, beyond issue 10's four: the MFU is also reported against those four alone.
NINE_MATMUL_CONV_KERNEL = "conv3x3_fwd_bwd_bfloat16_9matmul"


def ceiling_conv_flops() -> int:
    """FLOPs of one forward pass of the ceiling's conv (each backward pass does as many)."""
    batch, side, channels = CEILING_CONV
    return 2 * batch * side * side * channels * channels * 9


def measure_ceiling() -> dict[str, float]:
    """GFLOP/s of the reference kernels; the fastest is the machine's ceiling. Issue 10 names
    four (the matmul and the conv, each in float32 and bfloat16); a fifth is the bfloat16 conv
    with the filter gradient as nine matmuls, as training can run it (training.layers.Conv2D):
    a ceiling the training's own convs could beat would flatter the MFU."""
    import tensorflow as tf

    from training.hardware import conv_step_seconds, seconds_per_call

    n = CEILING_MATMUL
    batch, side, channels = CEILING_CONV
    conv_flops = 3 * ceiling_conv_flops()  # forward + two backward convs

    def conv_gflops(dtype, matmul_filter_grad: bool = False) -> float:
        seconds = conv_step_seconds(
            dtype, batch=batch, size=side, channels=channels, repeats=3, input_grad=True,
            min_seconds=CEILING_SECONDS, matmul_filter_grad=matmul_filter_grad,
        )  # fmt: skip
        return conv_flops / seconds / 1e9

    results = {}
    for name, dtype in (("float32", tf.float32), ("bfloat16", tf.bfloat16)):
        a = tf.random.normal([n, n], dtype=dtype)
        b = tf.random.normal([n, n], dtype=dtype)
        matmul = tf.function(lambda a=a, b=b: tf.reduce_sum(tf.cast(a @ b, tf.float32)))
        seconds = seconds_per_call(matmul, 3, CEILING_SECONDS)
        results[f"matmul_{name}"] = 2 * n**3 / seconds / 1e9
        results[f"conv3x3_fwd_bwd_{name}"] = conv_gflops(dtype)
    results[NINE_MATMUL_CONV_KERNEL] = conv_gflops(tf.bfloat16, matmul_filter_grad=True)
    return results


def run_options(args):
    """The training run this benchmark asks for (default folder runs/bench-<recipe>-<seed>)."""
    from training.config import RunOptions

    return RunOptions(
        data=args.data,
        run_dir=args.run_dir or f"runs/bench-{args.recipe}-{args.seed}",
        recipe=args.recipe,
        seed=args.seed,
        precision=args.precision,
        filter_grad=args.filter_grad,
        epochs=args.epochs,
    )


def refuse_finished_run(run_dir: Path) -> None:
    """A finished folder would not train again, so its row would pair old training seconds
    with a new ceiling and a wall time of seconds: refuse instead."""
    if is_finished(run_dir):
        raise SystemExit(
            f"{run_dir} holds a finished run (its row was recorded when it finished); "
            "pick a new --run-dir to benchmark again"
        )


def add_ceiling(run_dir: Path, ceiling: dict[str, float]) -> list[dict[str, float]]:
    """Appends this sitting's ceiling kernels to the run folder; returns every sitting's."""
    path = run_dir / BENCH_CEILINGS
    sittings = json.loads(path.read_text()) if path.exists() else []
    sittings.append(ceiling)
    path.write_text(json.dumps(sittings, indent=2))
    return sittings


def run_recipe(opts) -> dict:
    from training.run import train

    start = time.perf_counter()
    run_dir = train(opts)
    meta = read_meta(run_dir)
    meta["bench_wall_seconds"] = time.perf_counter() - start
    return meta


def summarize(meta: dict, sittings: list[dict[str, float]]) -> dict:
    """The row's figures; the ceiling is the fastest kernel of any sitting of the run. The MFU
    is also given against issue 10's four kernels alone (`mfu_issue_kernels`): the ceiling
    without the conv form this project added (sittings measured before it have no fifth)."""
    from training.config import tta_passes

    f = meta["forward_flops_per_image"]
    train_work = 3 * f * meta["images_seen"]
    tta_work = tta_passes(2) * f * meta["test_images"]
    gflops = train_work / meta["train_seconds"] / 1e9
    ceiling = max(sittings, key=lambda kernels: max(kernels.values()))
    best = max(ceiling.values())
    issue_best = max(
        v for kernels in sittings for k, v in kernels.items() if k != NINE_MATMUL_CONV_KERNEL
    )
    return {
        "plain": meta["test_accuracy"],
        "tta": meta["test_accuracy_tta"],
        "work_pflop": (train_work + tta_work) / 1e15,
        "train_seconds": meta["train_seconds"],
        "images_per_second": meta["images_per_second"],
        "achieved_gflops": gflops,
        "ceiling_gflops": best,
        "ceiling_kernel": max(ceiling, key=ceiling.get),
        "mfu": gflops / best,
        "mfu_issue_kernels": gflops / issue_best,
        "sittings": len(sittings),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_recipe_arguments(ap)
    ap.add_argument(
        "--run-dir",
        type=non_empty(),
        help="default runs/bench-<recipe>-<seed>; an interrupted run there resumes, "
        "a finished one is refused",
    )
    ap.add_argument("--ceiling-only", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="print only; no BENCHMARKS.md row")
    ap.add_argument(
        "--note",
        default="",
        help="a remark for the row's recipe cell (what differs, e.g. a code change under test), "
        "so that no row needs editing by hand",
    )
    args = ap.parse_args(argv)

    from training.run import user_errors
    from training.run_folder import TF_LOG, claim_run_dir, make_run_dir
    from training.run_options import pin_run_options

    opts = run_options(args)
    startup_log = None
    with user_errors(), contextlib.ExitStack() as claim:
        if not args.ceiling_only:  # refusals first, before a minute of measuring
            refuse_finished_run(Path(opts.run_dir))
            run_dir = make_run_dir(opts.run_dir)
            # Held through the measuring too: a second bench on a busy folder must not add a
            # sitting to its ceilings nor take its CPU. train() claims it again (re-entrant).
            claim.enter_context(claim_run_dir(run_dir))
            pin_run_options(run_dir, opts)
            startup_log = run_dir / TF_LOG
        _measure_and_train(args, opts, startup_log)


def _measure_and_train(args: argparse.Namespace, opts, startup_log: Path | None) -> None:
    from runtime.cpu import describe_cpu
    from runtime.tf_startup import import_tensorflow

    import_tensorflow(startup_log)
    cpu = describe_cpu()
    ceiling = measure_ceiling()
    print(f"cpu: {cpu}")
    print("ceiling kernels: " + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in ceiling.items()))
    if args.ceiling_only:
        return
    add_ceiling(Path(opts.run_dir), ceiling)
    meta = run_recipe(opts)
    # Measured again once the run has finished: the MFU is taken against the higher one.
    after = measure_ceiling()
    print("after training: " + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in after.items()))
    sittings = add_ceiling(Path(opts.run_dir), after)
    s = summarize(meta, sittings)
    label = recipe_label(args.recipe, args.epochs, _ran_as_coded(meta, opts), args.note)
    line = (
        f"{label} seed {args.seed} {precision_cell(meta)}: plain {s['plain']:.2%} · "
        f"TTA {s['tta']:.2%} · work {s['work_pflop']:.3f} PFLOP · "
        f"train {s['train_seconds']:.0f} s · wall {wall_cell(meta)} s · "
        f"{s['images_per_second']:,.0f} img/s · {s['achieved_gflops']:,.0f} GFLOP/s "
        f"of {s['ceiling_gflops']:,.0f} ({s['ceiling_kernel']}, best of {s['sittings']} "
        f"measurements) · MFU {mfu_cell(s)} · {cpu}"
    )
    print(line)
    if not args.no_record:
        record_row(label, args.seed, meta, s, cpu)


def _ran_as_coded(meta: dict, opts) -> bool:
    """Whether the run's recipe is the code's now: a run resumed after the code's recipe
    changed finishes with the settings it started with (training.run_folder)."""
    return meta["recipe"] == json.loads(json.dumps(opts.resolve_recipe().to_dict()))


def record_row(label: str, seed: int, meta: dict, s: dict, cpu: str) -> None:
    doc = Path("docs/BENCHMARKS.md")
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if TABLE_MARK not in text:
        text += f"\n## Training recipes (bench/train.py)\n\n{TABLE_MARK}\n{ROW_HEADER}"
    row = (
        f"| {date.today()} | {label} | {seed} | {precision_cell(meta)} | {s['plain']:.2%} "
        f"| {s['tta']:.2%} | {s['work_pflop']:.3f} | {s['train_seconds']:.0f} "
        f"| {wall_cell(meta)} | {s['images_per_second']:,.0f} "
        f"| {s['achieved_gflops']:,.0f} | {s['ceiling_gflops']:,.0f} | {mfu_cell(s)} | {cpu} |\n"
    )
    doc.write_text(_insert_row(text, row))


def precision_cell(meta: dict) -> str:
    """The precision, and the filter gradients' form where it is not TensorFlow's kernel."""
    if meta.get("filter_grad") == "matmuls":
        return f"{meta['precision']}, filter gradients as nine matmuls"
    return meta["precision"]


def mfu_cell(s: dict) -> str:
    """The MFU, and against issue 10's four kernels alone where that ceiling is lower."""
    if s["mfu_issue_kernels"] <= s["mfu"]:
        return f"{s['mfu']:.0%}"
    return f"{s['mfu']:.0%} (of issue 10's four kernels: {s['mfu_issue_kernels']:.0%})"


def wall_cell(meta: dict) -> str:
    """This invocation's wall seconds, marked when the run resumed from a checkpoint.

    Training seconds add up over every sitting (the checkpoint keeps them); wall time here
    covers only the last one.
    """
    wall = f"{meta['bench_wall_seconds']:.0f}"
    return f"{wall} (resumed)" if meta.get("resumed_at_steps") else wall


NOTE_MARK = "(note: "  # how a --note starts in the recipe cell (bench.work_curve reads it)


def recipe_label(recipe: str, epochs: float | None, as_coded: bool = True, note: str = "") -> str:
    """The table's recipe cell: the name, plus the epochs when the run overrode them, a mark
    when the run kept settings the code's recipe no longer has (see its meta.json), and the
    --note given."""
    label = recipe if epochs is None else f"{recipe} {epochs:g} ep"
    label = label if as_coded else f"{label}, settings as started (meta.json)"
    return f"{label} {NOTE_MARK}{note.replace('|', '/')})" if note else label


def _insert_row(text: str, row: str) -> str:
    """Append `row` at the end of the table that follows TABLE_MARK."""
    start = text.index(TABLE_MARK) + len(TABLE_MARK) + 1 + len(ROW_HEADER)
    end = text.find("\n\n", start - 1)  # from the header's own newline: the table may be empty
    end = len(text) if end == -1 else end + 1
    return text[:end] + row + text[end:]


if __name__ == "__main__":
    main()
