"""Accuracy against training work, drawn from the bench/train.py rows of docs/BENCHMARKS.md.

    python -m bench.work_curve [--doc docs/BENCHMARKS.md] [--out docs/accuracy-vs-work.png]

Every row is one run (one seed); each recipe length is a point at the mean of its runs, with
the single runs shown faintly behind. The line joins the airbench-family recipes; the `vgg`
reference is another design, and the `fast` runs from before the Muon rescale (nineteenth
session) are of an older version of the default, and a row with a `bench.train --note` is a
variant under test (its recipe cell ends "(note: ...)"), so all three stand apart as markers.
Rows whose
precision cell is marked "defect" were measured with a since-fixed bug and are left out.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from bench.train import NOTE_MARK, ROW_HEADER, TABLE_MARK

REFERENCE_RECIPES = ("vgg",)  # drawn apart from the line
# The mark on the recipe cell of the `fast` rows from before the nineteenth session (relabelled
# in docs/BENCHMARKS.md beside today's `fast` rows): also drawn apart.
SUPERSEDED = "Muon unrescaled"


def off_line(recipe: str) -> bool:
    return recipe in REFERENCE_RECIPES or SUPERSEDED in recipe or NOTE_MARK in recipe


def read_rows(text: str) -> list[dict]:
    """The training table's rows as dicts keyed by its header cells."""
    start = text.index(TABLE_MARK) + len(TABLE_MARK) + 1
    header = [c.strip() for c in ROW_HEADER.splitlines()[0].strip("|").split("|")]
    rows = []
    for line in text[start + len(ROW_HEADER) :].splitlines():
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def points(rows: list[dict]) -> dict[str, list[tuple[float, float, float]]]:
    """recipe -> [(work PFLOP, plain %, TTA %)] for the usable rows."""
    out: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for row in rows:
        if "defect" in row["precision"]:
            continue
        out[row["recipe"]].append(
            (float(row["work PFLOP"]), _percent(row["plain"]), _percent(row["TTA"]))
        )
    return out


def _percent(cell: str) -> float:
    return float(cell.rstrip("%"))


def plot(by_recipe: dict[str, list[tuple[float, float, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    means = sorted(
        (
            statistics.mean(p[0] for p in runs),
            statistics.mean(p[1] for p in runs),
            statistics.mean(p[2] for p in runs),
            recipe,
            len(runs),
        )
        for recipe, runs in by_recipe.items()
    )
    for runs in by_recipe.values():
        ax.scatter([p[0] for p in runs], [p[2] for p in runs], color="C0", alpha=0.3, s=14)
        ax.scatter([p[0] for p in runs], [p[1] for p in runs], color="C1", alpha=0.3, s=14)
    line = [m for m in means if not off_line(m[3])]
    ax.plot([m[0] for m in line], [m[2] for m in line], "o-", color="C0", label="with TTA")
    ax.plot([m[0] for m in line], [m[1] for m in line], "s--", color="C1", label="plain")
    for work, plain, tta, recipe, _ in means:
        if off_line(recipe):
            ax.scatter([work, work], [tta, plain], color=["C0", "C1"], marker="x", s=40)
    ax.scatter([], [], color="gray", marker="x", label=f"vgg; fast, {SUPERSEDED}; noted")
    rightmost = max(m[0] for m in means)
    markers = 0
    for index, (work, _, tta, recipe, runs) in enumerate(means):
        # Neighbours alternate above and below the line; the last label leans left to stay in.
        # Markers off the line take short names (the legend says what they are), below them,
        # alternately to the right and the left.
        left = work > 0.85 * rightmost
        if off_line(recipe):
            dx, dy, left = 8, -16, left or markers % 2 == 1
            markers += 1
            recipe = recipe.replace(f", {SUPERSEDED}", "")
        else:
            dx, dy = 6, 6 if index % 2 == 0 else -12
        ax.annotate(
            f"{recipe}, {runs} run{'s' * (runs > 1)}",  # runs, not seeds: some repeat a seed
            (work, tta),
            textcoords="offset points",
            xytext=(-dx if left else dx, dy),
            ha="right" if left else "left",
            fontsize=8,
        )
    ax.set_xlabel("work: training + TTA evaluation (PFLOP)")
    ax.set_ylabel("test accuracy (%), CIFAR-10 JPEG mirror")
    ax.set_title("Accuracy against work (bench/train.py rows, mean of runs)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.work_curve", description=__doc__)
    ap.add_argument("--doc", default="docs/BENCHMARKS.md")
    ap.add_argument("--out", default="docs/accuracy-vs-work.png")
    args = ap.parse_args(argv)
    by_recipe = points(read_rows(Path(args.doc).read_text()))
    plot(by_recipe, Path(args.out))
    for recipe, runs in sorted(by_recipe.items(), key=lambda kv: kv[1][0][0]):
        work, tta = (statistics.mean(p[i] for p in runs) for i in (0, 2))
        print(f"{recipe}: {work:.3f} PFLOP, {len(runs)} run(s), mean TTA {tta:.2f} %")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
