"""`python -m export.predict photo.jpg [more.jpg ...]`: top-3 classes of photos, for humans.

Decodes each file as the page's proxy does (imaging.decode: EXIF orientation applied, so a
phone photo is upright; transparency over white) and runs the SavedModel's `pixels` signature:
the answer the page gives. `--serving-default` sends the file's bytes through `serving_default`
instead, exactly what a REST or gRPC client sending encoded images gets (TensorFlow's decoders
ignore EXIF orientation). `--model` is a base path (its newest version is used) or one version
folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from export.config import DEFAULT_BASE_PATH, GUESS_BELOW, MAX_PIXELS
from export.publish import saved_model_dir
from imaging.decode import ImageError, to_pixels
from runtime.cli_args import ArgumentParser, non_empty, positive
from runtime.tf_startup import import_tensorflow


def format_top(name: str, probabilities, class_names, k: int) -> str:
    """The top `k` classes, and a mark where the best is under GUESS_BELOW, as the page
    marks it: every photo gets one of the ten classes, a plain blue square too."""
    order = probabilities.argsort()[::-1][:k]
    rows = [f"  {class_names[i]:<12s} {probabilities[i]:7.2%}" for i in order]
    if probabilities[order[0]] < GUESS_BELOW:
        rows.append(f"  (a guess: the best class is under {GUESS_BELOW:.0%})")
    return "\n".join([name, *rows])


def short_reason(err: Exception) -> str:
    """The decoder's own sentence out of a TensorFlow graph error (or the OS error)."""
    if isinstance(err, OSError) and err.strerror:  # not "[Errno 2] ...: 'path'"
        return err.strerror.lower()
    message = getattr(err, "message", str(err))
    noise = ("Graph execution error", "Detected at", "<stack", "[[", " ", "\t")
    lines = [line for line in message.splitlines() if line.strip() and not line.startswith(noise)]
    reason = lines[0] if lines else message
    if reason.startswith("assertion failed: [") and reason.endswith("]"):  # tf.debugging's frame
        reason = reason.removeprefix("assertion failed: [").removesuffix("]")
    if reason.startswith("Unknown image file format"):  # TF's list names JPEG XL, refused here
        return "not an image this model reads (JPEG, PNG, GIF, BMP or WebP)"
    return reason


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m export.predict", description=__doc__)
    ap.add_argument(
        "images", nargs="+", type=non_empty(Path),
        help="JPEG, PNG, GIF, BMP or WebP files (TIFF too, without --serving-default)",
    )  # fmt: skip
    ap.add_argument(
        "--model", "--base-path", type=non_empty(), default=str(DEFAULT_BASE_PATH),
        help="base path (as export's --base-path) or version folder (default: %(default)s, "
        "from the current folder)",
    )  # fmt: skip
    ap.add_argument(
        "-k", type=positive(int), default=3, help="how many classes to show (default 3)"
    )
    ap.add_argument(
        "--serving-default",
        action="store_true",
        help="send the bytes through serving_default, as a model-server client does (EXIF "
        "orientation ignored) instead of decoding them as the page does",
    )
    args = ap.parse_args(argv)
    try:
        version_dir = saved_model_dir(args.model)
    except FileNotFoundError as err:
        # The default is relative: run from another folder, it names nothing there.
        hint = "; name the model with --model PATH" if args.model == str(DEFAULT_BASE_PATH) else ""
        print(f"predict: {err}{hint}", file=sys.stderr)
        return 2
    # Named files that are not there are said before the model's seconds of loading.
    readable = [path for path in args.images if not _unreadable(path)]
    failed = len(args.images) - len(readable)
    if not readable:
        return 1
    import_tensorflow()  # a human reads this output: no start-up log lines
    import tensorflow as tf

    from export.evaluation import ServedModel

    model = ServedModel(version_dir)
    how = "bytes through serving_default" if args.serving_default else "decoded as the page does"
    print(f"model: {version_dir} (TTA {model.info['tta_name']}; {how})")
    for path in readable:
        try:
            data = path.read_bytes()
            if args.serving_default:
                probabilities = model.serving_default([data])[0]
            else:
                probabilities = model.pixels(to_pixels(data, MAX_PIXELS)[np.newaxis])[0]
        except (OSError, ImageError, tf.errors.InvalidArgumentError) as err:
            print(f"{path}: cannot classify: {short_reason(err)}", file=sys.stderr)
            failed += 1
            continue
        print(format_top(str(path), probabilities, model.info["class_names"], args.k))
    return 1 if failed else 0


def _unreadable(path: Path) -> bool:
    """Says why `path` cannot be classified, if it is missing or a folder."""
    why = "a folder, not an image" if path.is_dir() else None if path.exists() else "no such file"
    if why:
        print(f"{path}: cannot classify: {why}", file=sys.stderr)
    return why is not None


if __name__ == "__main__":
    sys.exit(main())
