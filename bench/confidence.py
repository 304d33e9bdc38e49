"""How sure a served model is, and how often it is right at each level of sureness.

    python -m bench.confidence [models/cifar10/5] [--data ../shared/data/cifar10-jpeg.tar.gz]

Runs the test images through the SavedModel's `pixels` signature (with the TTA it bakes in)
and prints, for bins of the best class's probability, the share of images there and the
accuracy on them, then the same split at a few thresholds. The page marks an answer under
`unsureBelow` (proxy/static/app.js) as a guess; this is the measurement behind that number.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from runtime.tf_startup import import_tensorflow
from training.config import default_data

BINS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
THRESHOLDS = (0.4, 0.5, 0.6)


def split_at(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """The images whose best class is under `threshold`: their share, the accuracy on them and
    on the rest (nan for an empty side)."""
    top = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == labels
    under = top < threshold
    return {
        "share": float(under.mean()),
        "accuracy_under": float(right[under].mean()) if under.any() else float("nan"),
        "accuracy_rest": float(right[~under].mean()) if (~under).any() else float("nan"),
    }


def by_confidence(probabilities: np.ndarray, labels: np.ndarray) -> list[str]:
    """Report lines: per bin of the top probability, the share of images and their accuracy;
    then the split at each of THRESHOLDS."""
    top = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == labels
    lines = []
    for low, high in itertools.pairwise(BINS):
        inside = (top >= low) & ((top < high) if high < 1.0 else (top <= high))
        accuracy = f"{right[inside].mean():.1%}" if inside.any() else "-"
        lines.append(f"top probability {low:.0%}-{high:.0%}: {inside.mean():6.1%} of images, "
                     f"right on {accuracy}")  # fmt: skip
    for threshold in THRESHOLDS:
        split = split_at(probabilities, labels, threshold)
        lines.append(
            f"under {threshold:.0%}: {split['share']:.1%} of images, right on "
            f"{split['accuracy_under']:.1%}; the rest right on {split['accuracy_rest']:.1%}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.confidence", description=__doc__)
    ap.add_argument("saved_model", nargs="?", default="models/cifar10/5")
    ap.add_argument("--data", default=default_data())
    args = ap.parse_args(argv)
    import_tensorflow()
    from export.evaluation import ServedModel
    from runtime.cpu import describe_cpu
    from training.data import load_dataset
    from training.inference import top1_accuracy

    dataset = load_dataset(args.data)
    served = ServedModel(args.saved_model)
    probabilities = served.pixels(dataset.test.images)
    print(f"{args.saved_model} (TTA {served.info['tta']}), {len(dataset.test.labels):,} test "
          f"images of {args.data}; {describe_cpu()}")  # fmt: skip
    print(f"accuracy {top1_accuracy(probabilities.argmax(1), dataset.test.labels):.2%}")
    for line in by_confidence(probabilities, dataset.test.labels):
        print(line)


if __name__ == "__main__":
    main()
