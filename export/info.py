"""The export information every version folder carries (`assets/model_info.json`): what was
exported from which run, with which TTA, and the accuracies measured then. Plain JSON, so the
model cards and checks read it without loading TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

from export.config import INFO_ASSET


def write_info(saved_model_dir: Path, info: dict) -> None:
    (saved_model_dir / INFO_ASSET).write_text(json.dumps(info, indent=2) + "\n")


def read_info(saved_model_dir: str | Path) -> dict:
    return json.loads((Path(saved_model_dir) / INFO_ASSET).read_text())
