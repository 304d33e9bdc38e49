"""Each conv layer's three passes timed apart: which kernels keep a training step from the ceiling.

    python -m bench.conv_passes [--recipe fast] [--precision mixed_bfloat16] [--repeats 3]

A training step runs every conv three times: forward, input gradient and filter gradient, each
with the FLOPs of the forward pass. For every Conv2D of the recipe's model this times the three
on random tensors of the layer's shapes at the recipe's batch size (one kernel at a time, so
each gets both cores), and prints GFLOP/s per pass beside bench.train's ceiling, measured in the
same run. Passes a training step never runs (the first conv's input gradient, a frozen
kernel's filter gradient) are left out. The last line says what MFU the convs alone would
allow if nothing else ran.

A fourth column times the same filter gradient computed another way, as nine matmuls (one per
kernel tap, each over the shifted input), which training runs for the wide convs in bfloat16
on an AMX CPU (training.layers.Conv2D, training.hardware.choose_filter_grad); the "all convs"
line counts, for each conv, the filter gradient in the form training runs there. A last row
does all of it for the ceiling's conv (batch 512, 8x8, 256->256).
"""

from __future__ import annotations

import argparse

from bench.train import CEILING_CONV, ceiling_conv_flops, measure_ceiling

PASSES = ("forward", "input grad", "filter grad", "as 9 matmuls")


def layer_passes(layer, batch: int) -> dict:
    """The three passes of one built Conv2D layer, on random tensors of its shapes."""
    import tensorflow as tf

    dtype = tf.as_dtype(layer.compute_dtype)
    _, h, w, cin = layer.input.shape
    _, oh, ow, cout = layer.output.shape
    return conv_passes(
        x=tf.random.normal([batch, h, w, cin], dtype=dtype),
        kernel=tf.random.normal(layer.kernel.shape, dtype=dtype),
        grad=tf.random.normal([batch, oh, ow, cout], dtype=dtype),
        padding=layer.padding.upper(),
    )


def ceiling_passes(dtype) -> dict:
    """The passes of bench.train's ceiling conv, in `dtype`."""
    import tensorflow as tf

    batch, side, channels = CEILING_CONV
    return conv_passes(
        x=tf.random.normal([batch, side, side, channels], dtype=dtype),
        kernel=tf.random.normal([3, 3, channels, channels], dtype=dtype),
        grad=tf.random.normal([batch, side, side, channels], dtype=dtype),
        padding="SAME",
    )


def conv_passes(x, kernel, grad, padding: str) -> dict:
    """tf.functions of the kernels a conv's forward and backward run: name -> function."""
    import tensorflow as tf

    from training.layers import filter_grad_as_matmuls

    conv = dict(strides=[1, 1, 1, 1], padding=padding)
    return {
        "forward": tf.function(lambda: tf.nn.conv2d(x, kernel, **conv)),
        "input grad": tf.function(
            lambda: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=grad, **conv
            )
        ),
        "filter grad": tf.function(
            lambda: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(kernel), out_backprop=grad, **conv
            )
        ),
        **(
            {"as 9 matmuls": tf.function(lambda: filter_grad_as_matmuls(x, grad))}
            if padding == "SAME" and kernel.shape[:2] == (3, 3)
            else {}
        ),
    }


def trained_passes(layer) -> tuple[str, ...]:
    """The passes a training step runs for `layer` as built (--filter-grad auto)."""
    matmuls = getattr(layer, "matmul_filter_grad", False)
    return (*PASSES[:2], "as 9 matmuls" if matmuls else "filter grad")


def measure(recipe_name: str, precision: str, repeats: int) -> list[dict]:
    """Per conv layer: its shapes, forward GFLOP per batch and seconds per pass."""
    from keras import layers

    from training.config import RECIPES
    from training.flops import conv_flops
    from training.hardware import choose_filter_grad, seconds_per_call
    from training.models import FROZEN_KERNELS, build_model, precision_policy

    recipe = RECIPES[recipe_name]
    filter_grad, _ = choose_filter_grad("auto", precision, recipe.arch)
    with precision_policy(precision):
        model = build_model(
            recipe.arch, 10, [0.0] * 3, [1.0] * 3, widths=recipe.widths, depth=recipe.depth,
            matmul_filter_grad=filter_grad == "matmuls",
        )  # fmt: skip
    rows = []
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    for layer in convs:
        passes = layer_passes(layer, recipe.batch_size)
        if not rows:  # the first conv's input is the image: no gradient wanted for it
            del passes["input grad"]
        if layer.name in FROZEN_KERNELS.get(recipe.arch, ()):  # never trained: no gradient
            passes.pop("filter grad")
            passes.pop("as 9 matmuls", None)
        rows.append(
            {
                "layer": layer.name,
                "shape": f"{layer.input.shape[1]}x{layer.input.shape[2]} "
                f"{layer.input.shape[3]}->{layer.output.shape[3]} {layer.compute_dtype}",
                "gflop": conv_flops(layer) * recipe.batch_size / 1e9,
                "seconds": {name: seconds_per_call(fn, repeats) for name, fn in passes.items()},
                "trained": trained_passes(layer),
            }
        )
    batch, side, channels = CEILING_CONV
    dtype = convs[-1].compute_dtype  # the policy's (the whitening conv's is always float32)
    rows.append(
        {
            "layer": "ceiling conv",
            "shape": f"{side}x{side} {channels}->{channels} {dtype}, batch {batch}",
            "gflop": ceiling_conv_flops() / 1e9,
            "seconds": {
                name: seconds_per_call(fn, repeats) for name, fn in ceiling_passes(dtype).items()
            },
        }
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.conv_passes", description=__doc__)
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--precision", default="mixed_bfloat16")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)

    from runtime.cpu import describe_cpu

    ceiling = measure_ceiling()
    best = max(ceiling.values())
    rows = measure(a.recipe, a.precision, a.repeats)
    print(describe_cpu())
    print(f"ceiling: {best:,.0f} GFLOP/s ({max(ceiling, key=ceiling.get)})")
    print(f"{a.recipe}, {a.precision}, GFLOP/s per pass (ms per batch):")
    print(f"  {'layer':14s} {'shape':28s}" + "".join(f"{p:>20s}" for p in PASSES))
    for row in rows:
        cells = "".join(_cell(row, p) for p in PASSES)
        print(f"  {row['layer']:14s} {row['shape']:28s}{cells}")
    layers, ceiling_row = rows[:-1], rows[-1]
    flops = sum(row["gflop"] * sum(p in row["seconds"] for p in row["trained"]) for row in layers)
    seconds = sum(row["seconds"].get(p, 0.0) for row in layers for p in row["trained"])
    per_pass = {p: sum(r["seconds"].get(p, 0.0) for r in layers) for p in PASSES}
    print(
        "  all convs, each pass as training runs it here: "
        + ", ".join(f"{p} {ms * 1e3:,.0f} ms" for p, ms in per_pass.items())
        + f"; {flops / seconds:,.0f} GFLOP/s = {flops / seconds / best:.0%} of the ceiling"
    )
    times = ceiling_row["seconds"]
    for grad in ("filter grad", "as 9 matmuls"):
        total = times["forward"] + times["input grad"] + times[grad]
        print(
            f"  ceiling conv, passes one after another, filter gradient {grad}: "
            f"{3 * ceiling_row['gflop'] / total:,.0f} GFLOP/s"
        )


def _cell(row: dict, name: str) -> str:
    """GFLOP/s (ms per batch) of one pass, or "not run" when training never runs it."""
    if name not in row["seconds"]:
        return f"{'not run':>20s}"
    seconds = row["seconds"][name]
    return f"{row['gflop'] / seconds:>11,.0f} ({seconds * 1e3:4.0f} ms)"


if __name__ == "__main__":
    main()
