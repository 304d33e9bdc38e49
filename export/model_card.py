"""`python -m export.model_card --run-dir runs/default`: write models/cifar10/MODEL_CARD.md.

Renders what a user of the shipped model needs to know from the run folder's meta.json,
history.json and evaluation.json (`make evaluate`), and the exported version's own files;
the training curves are copied beside the card and the confusion matrix is drawn for the
served TTA level. The card of the version before, if another, is kept as MODEL_CARD-v<N>.md
with its pictures (a rolled-back version keeps its card). The line "Test accuracy of the
served model" is what tests/export/test_shipped_model.py holds the shipped model to.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from export.config import DEFAULT_BASE_PATH
from export.info import check_exported_from, read_info
from export.publish import latest_version_dir
from modelserver.version_names import version_dirs
from runtime.cli_args import ArgumentParser, non_empty
from training.config import DEFAULT_RUN_DIR, TTA_ACCURACY_KEYS, TTA_NAMES, tta_passes
from training.metrics import share
from training.run_folder import CONFUSION, CURVES, EVALUATION, META, read_meta, write_whole

# Why a data set has no served-accuracy figure: there are no image files to send.
NO_IMAGE_FILES = "n/a (the data set has no image files)"

CARD_NAME = "MODEL_CARD.md"
IMAGES = (CURVES, CONFUSION)
CARD_VERSION = re.compile(r"^# Model card: `[^`]*` version (\d+)", re.M)
SERVED_LINE = re.compile(r"Test accuracy of the served model[^*]*\*\*([0-9.]+) %\*\*")


def data_name(source: str) -> str:
    """What the run trained on, as the card names it (meta.json keeps only the --data given)."""
    name = Path(source).name
    if "cifar10-jpeg" in name:
        return "CIFAR-10 (JPEG q75 mirror)"
    if source == "keras":
        return "CIFAR-10 (the Keras download)"
    if name.startswith(("cifar-10-python", "cifar-10-batches-py")):
        return "CIFAR-10 (the official python archive)"
    return f"the image set `{name}`"


def known_limits(class_names: list[str], data: str) -> list[str]:
    return [
        "Inputs are seen at 32x32 pixels: a photo is center-cropped to a square and shrunk, so "
        "objects outside the central square, or small in it, are lost.",
        f"{len(class_names)} classes only ({', '.join(class_names)}); anything else still gets "
        "one of them, often with high probability.",
        f"Trained on {data} at 32x32 pixels; real photos differ in framing, lighting and "
        "sharpness, so expect lower accuracy on them than the test figure.",
        "`serving_default` ignores EXIF orientation; the proxy applies it before sending pixels.",
        "Probabilities are not calibrated: read them as a ranking, not as a chance of being right.",
        "The test accuracy above is somewhat optimistic: the recipe's settings were chosen, and "
        "versions were published only when they beat the previous one, by comparing accuracies "
        "on these same test images (no held-out split).",
    ]


def served_accuracy(card_text: str) -> float:
    """The card's served test accuracy as a fraction (what the shipped-model test checks)."""
    match = SERVED_LINE.search(card_text)
    if not match:
        raise ValueError("model card has no 'Test accuracy of the served model' line")
    return float(match.group(1)) / 100


def render(
    meta: dict,
    info: dict,
    version_dir: Path,
    evaluated: tuple[dict | None, str],
    note: str,
    images: tuple,
) -> str:
    """The card's text from the run's meta.json and the version's model_info.json;
    `evaluated`: run_evaluation's answer."""
    evaluation, why_not = evaluated
    export_report = _optional_json(version_dir / "export_report.json")
    tta = info["tta"]
    data = data_name(meta.get("data", ""))
    sections = [
        _header(meta, info, version_dir, data),
        _training(meta, note),
        _accuracy(meta, tta, version_dir.name, export_report),
        _per_class(evaluation, tta) if evaluation else f"## Per class\n\n{why_not}",
        _export(export_report, info),
        _images(images),
        "## Known limits\n\n"
        + "\n".join(f"- {line}" for line in known_limits(info["class_names"], data)),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def write_card(
    run_dir: str | Path, base_path: str | Path, version: int | None = None, note: str = ""
) -> Path:
    run_dir, base_path = Path(run_dir), Path(base_path)
    if version is None:
        version_dir = latest_version_dir(base_path)
    elif version in (folders := version_dirs(base_path)):
        version_dir = folders[version]  # "7", or "007": the folder TF Serving loads as 7
    else:
        raise FileNotFoundError(f"no version {version} in {base_path}")
    if not (run_dir / META).is_file():
        raise FileNotFoundError(f"{run_dir} holds no finished training run ({META})")
    check_exported_from(run_dir, version_dir)
    # The text first: a run folder it cannot render (a missing figure) changes nothing.
    meta, info = read_meta(run_dir), read_info(version_dir)
    evaluation, why_not = evaluated = run_evaluation(run_dir, meta)
    if why_not:
        print(f"model_card: {why_not}", file=sys.stderr)
    drawn = {CURVES: (run_dir / CURVES).exists(), CONFUSION: evaluation is not None}
    images = tuple(name for name in IMAGES if drawn[name])
    text = render(meta, info, version_dir, evaluated, note, images)
    card = base_path / CARD_NAME
    archive_card(card, version_dir.name)
    for name in IMAGES:
        (base_path / name).unlink(missing_ok=True)  # no picture of the version before stays
    if CURVES in images:
        shutil.copyfile(run_dir / CURVES, base_path / CURVES)
    if evaluation:
        draw_confusion(evaluation, info["tta"], base_path / CONFUSION)
    write_whole(card, text)
    return card


def archive_card(card: Path, version: str) -> Path | None:
    """Keep the card of another version as MODEL_CARD-v<N>.md, its pictures as <name>-v<N>.png:
    the new card takes their names, and a rollback to that version wants its card back."""
    text = card.read_text() if card.is_file() else ""
    match = CARD_VERSION.search(text)
    if not match or int(match.group(1)) == int(version):
        return None
    old = match.group(1)
    for name in IMAGES:
        kept = f"{Path(name).stem}-v{old}.png"
        if (card.parent / name).is_file():
            shutil.copyfile(card.parent / name, card.parent / kept)
        text = text.replace(f"]({name})", f"]({kept})")
    archived = card.with_name(f"{Path(CARD_NAME).stem}-v{old}.md")
    archived.write_text(text)
    return archived


def draw_confusion(evaluation: dict, tta: int, path: Path) -> Path:
    """The confusion matrix of the served TTA level (the run's own confusion.png shows the
    level `make evaluate --headline` chose)."""
    key, level = _served_evaluation(evaluation, tta)
    from training.plots import plot_confusion

    names = list(level["per_class"])
    title = f"confusion matrix (TTA {key.removeprefix('tta_')}), accuracy {level['accuracy']:.2%}"
    return plot_confusion(np.array(level["confusion_matrix"]), names, path, title)


def run_evaluation(run_dir: Path, meta: dict) -> tuple[dict | None, str]:
    """The run folder's evaluation.json when it measured the run's own test images, else None
    and why: a report of other images (`evaluate --data my_photos`, a smaller --test-subset)
    would sit under the card's accuracy heading as if it were of the same test set. (A subset
    of the same size is the same pick: evaluate draws it with the run's seed.)"""
    evaluation = _optional_json(run_dir / EVALUATION)
    if evaluation is None:
        return None, "No evaluation.json in the run folder: run `make evaluate` first."
    data, images = data_name(evaluation.get("data", "")), evaluation.get("test_images")
    if (data, images) != (data_name(meta.get("data", "")), meta.get("test_images")):
        return None, (
            f"The run folder's evaluation.json is of other test images ({images} of {data}) "
            f"than the run's ({meta.get('test_images')} of {data_name(meta.get('data', ''))}): "
            "run `make evaluate` (its own test set) for the per-class figures and the "
            "confusion matrix."
        )
    return evaluation, ""


def _served_evaluation(evaluation: dict, tta: int) -> tuple[str, dict]:
    """The evaluation of the served TTA level, or of none when it lacks that level."""
    key = f"tta_{TTA_NAMES[tta]}"
    key = key if key in evaluation else "tta_none"
    return key, evaluation[key]


def _optional_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _header(meta: dict, info: dict, version_dir: Path, data: str) -> str:
    return "\n".join(
        [
            f"# Model card: `cifar10` version {version_dir.name}",
            "",
            f"An image classifier for the {len(info['class_names'])} classes of {data}, "
            "trained from scratch and "
            "served by TensorFlow Serving (or the local `modelserver`) with its preprocessing "
            "inside the graph: send a JPEG/PNG/GIF/BMP/WebP to `serving_default`, or 32x32 RGB "
            "uint8 pixels to `pixels`.",
            "",
            "| | |",
            "| --- | --- |",
            f"| data set | {data}: {meta.get('train_images')} training images, "
            f"{meta.get('test_images')} test images |",
            f"| architecture | `{meta['arch']}`, widths {meta.get('widths')}, "
            f"{meta.get('depth', 2)} convs per group |",
            f"| parameters | {meta['params']:,} |",
            f"| work per image | {meta['forward_flops_per_image'] / 1e6:,.0f} MFLOP "
            f"(x{tta_passes(info['tta'])} with the served TTA) |",
            f"| classes | {', '.join(info['class_names'])} |",
            f"| exported | {info.get('exported_at')} with TensorFlow {info['tensorflow']}, "
            f"Keras {info['keras']} |",
        ]
    )


def _training(meta: dict, note: str = "") -> str:
    cpu = meta.get("cpu", {})
    resumed = meta.get("resumed_at_steps") or []
    lines = [
        "## How it was trained",
        "",
        f"    {meta.get('command', 'python -m training.train (command not recorded)')}",
        "",
        f"- recipe `{meta.get('recipe_name')}`, seed {meta.get('seed')}, "
        f"precision {meta.get('precision')}",
        f"- training steps took {meta['train_seconds']:,.0f} s "
        f"({meta['images_per_second']:,.0f} images/s); "
        f"{'its last sitting' if resumed else 'the command'} "
        f"{meta['last_invocation_wall_seconds']:,.0f} s wall up to its final evaluation, "
        f"on {cpu.get('model', '?')}, "
        f"{cpu.get('cores', '?')} cores, CPU flags {', '.join(cpu.get('flags', []))}",
        f"- resumed after interruptions at steps {resumed} of {meta.get('total_steps', '?')}"
        if resumed
        else None,
        f"- normalisation mean {_rounded(meta['mean'])}, std {_rounded(meta['std'])} "
        "(0..255 units, inside the graph)",
        f"- note: {note}" if note else None,
    ]
    return "\n".join(line for line in lines if line is not None)


def _rounded(values) -> list[float]:
    return [round(v, 2) for v in values]


def _accuracy(meta: dict, tta: int, version: str, export_report: dict | None) -> str:
    rows = [
        f"| {TTA_NAMES[level]} | {meta[key]:.2%} |"
        for level, key in TTA_ACCURACY_KEYS.items()
        if key in meta
    ]
    served, source = served_figure(meta, tta, export_report)
    return "\n".join(
        [
            f"## Accuracy on the {meta.get('test_images')} test images",
            "",
            "| test-time augmentation | accuracy |",
            "| --- | --- |",
            *rows,
            "",
            f"Test accuracy of the served model (version {version}, TTA {TTA_NAMES[tta]}, "
            f"baked into the graph): **{served * 100:.2f} %**, {source}",
        ]
    )


def served_figure(meta: dict, tta: int, export_report: dict | None) -> tuple[float, str]:
    """The served accuracy and where it comes from: the exported SavedModel's own figure when
    the export measured it (`--tflite`) on the run's own test images (its data, as many), else
    the training run's on the same weights."""
    trained = meta[TTA_ACCURACY_KEYS[tta]]
    saved = (export_report or {}).get("savedmodel", {})
    measured = saved.get("pixels_accuracy")
    if measured is None:
        return trained, (
            "as training measured the same weights (the export did not measure the SavedModel: "
            "`python -m export --tflite` does)"
        )
    # A report from before the export recorded its data names none: the count must do.
    if (saved.get("data", meta.get("data")), saved.get("test_images")) != (
        meta.get("data"),
        meta.get("test_images"),
    ):
        return trained, (
            "as training measured the same weights (the export measured the SavedModel on "
            "other test images)"
        )
    return measured, (
        f"measured on the exported SavedModel through `pixels` (training measured {trained:.2%})"
    )


def _per_class(evaluation: dict, tta: int) -> str:
    key, level = _served_evaluation(evaluation, tta)
    per_class = level["per_class"]
    rows = [
        f"| {name} | {share(c['recall'])} | {share(c['precision'])} | {c['support']} |"
        for name, c in per_class.items()
    ]
    return "\n".join(
        [
            f"## Per class ({key.removeprefix('tta_')})",
            "",
            "| class | accuracy (recall) | precision | images |",
            "| --- | --- | --- | --- |",
            *rows,
        ]
    )


def _export(report: dict | None, info: dict) -> str:
    lines = [
        "## Exported formats",
        "",
        f"SavedModel signatures `serving_default` (`image_bytes`) and `pixels` (`images`), "
        f"TTA {info['tta_name']} in the graph, warm-up requests in `assets.extra/`.",
    ]
    if report and "tflite" in report:
        saved, lite = report["savedmodel"], report["tflite"]
        lines += [
            "",
            "| format | size | test accuracy |",
            "| --- | --- | --- |",
            f"| SavedModel via `pixels` (TTA {info['tta_name']}) | {saved['bytes'] / 1e6:.1f} MB "
            f"| {saved['pixels_accuracy']:.2%} |",
            f"| SavedModel via `serving_default` on the JPEG files | | "
            f"{share(saved['serving_default_accuracy'], NO_IMAGE_FILES)} |",
            *[
                f"| TFLite {kind} (no TTA) | {lite[kind]['bytes'] / 1e6:.1f} MB "
                f"| {lite[kind]['test_accuracy']:.2%} |"
                for kind in ("float32", "int8")
            ],
        ]
        if "measured_on" in report:
            lines += ["", f"Measured by the export on {report['measured_on']}."]
    return "\n".join(lines)


def _images(names: tuple) -> str:
    return "\n\n".join(f"![{Path(name).stem}]({name})" for name in names)


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m export.model_card", description=__doc__)
    ap.add_argument("--run-dir", default=DEFAULT_RUN_DIR, type=non_empty(Path))
    ap.add_argument("--base-path", default=str(DEFAULT_BASE_PATH), type=non_empty(Path))
    ap.add_argument("--version", type=int, help="default: the newest version")
    ap.add_argument("--note", default="", help="a remark on how the run went (conditions)")
    args = ap.parse_args(argv)
    try:
        card = write_card(args.run_dir, args.base_path, args.version, args.note)
    except (OSError, ValueError) as err:
        print(f"model_card: {err}", file=sys.stderr)
        return 1
    except KeyError as err:  # a meta.json or model_info.json without a figure the card shows
        print(f"model_card: the run or the version does not record {err}", file=sys.stderr)
        return 1
    print(f"wrote {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
