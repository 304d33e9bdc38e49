"""Top-1 agreement of an exported SavedModel with its Keras model on the full test set.

    python -m bench.export_agreement --run-dir runs/default --model models/cifar10

Issue 3 asks for >= 99.9 % through `pixels` and >= 99 % through `serving_default` fed the
original JPEG files. Exits 1 when either share is below its bar, 2 when the two cannot be
compared (a run not finished, a version exported from other weights, no test files).
`--limit` takes the first N images of every class (for a quick try).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from export.config import DEFAULT_BASE_PATH, MIN_PIXELS_AGREEMENT, MIN_SERVING_DEFAULT_AGREEMENT
from training.config import DEFAULT_RUN_DIR, default_data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.export_agreement", description=__doc__)
    ap.add_argument("--run-dir", default=DEFAULT_RUN_DIR)
    ap.add_argument("--model", default=str(DEFAULT_BASE_PATH), help="base path or version folder")
    ap.add_argument("--data", default=default_data())
    ap.add_argument("--limit", type=int, help="images per class (default: all)")
    args = ap.parse_args(argv)

    from export.encoded import read_encoded
    from export.evaluation import agreement
    from export.info import check_exported_from
    from export.publish import saved_model_dir
    from training.data import DataError
    from training.run_model import UnfinishedRunError, load_for_inference

    try:  # the model and its checks before the seconds of reading the test files
        version_dir = saved_model_dir(args.model)
        model, _ = load_for_inference(args.run_dir)
        check_exported_from(Path(args.run_dir), version_dir, "pass --model {path}")
        encoded = read_encoded(args.data, "test")
    except (OSError, ValueError, DataError, UnfinishedRunError) as err:
        print(f"export_agreement: {err}", file=sys.stderr)
        return 2
    if args.limit:
        encoded = encoded.per_class(args.limit)
    start = time.perf_counter()
    result = agreement(version_dir, model, encoded)
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))
    passed = (
        result["pixels_agreement"] >= MIN_PIXELS_AGREEMENT
        and result["serving_default_agreement"] >= MIN_SERVING_DEFAULT_AGREEMENT
    )
    print("PASS" if passed else "FAIL", "(bars: pixels >= 99.9 %, serving_default >= 99 %)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
