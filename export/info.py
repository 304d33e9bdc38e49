"""The export information every version folder carries (`assets/model_info.json`): what was
exported from which run, with which TTA, and the accuracies measured then. Plain JSON, so the
model cards and checks read it without loading TensorFlow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from export.config import INFO_ASSET
from export.publish import rolled_back_dirs
from modelserver.version_names import version_dirs
from training.run_folder import FINAL_WEIGHTS


def write_info(saved_model_dir: Path, info: dict) -> None:
    (saved_model_dir / INFO_ASSET).write_text(json.dumps(info, indent=2) + "\n")


def read_info(saved_model_dir: str | Path) -> dict:
    return json.loads((Path(saved_model_dir) / INFO_ASSET).read_text())


def info_if_any(version_dir: Path) -> dict:
    """A version's export information; {} for a folder exported without it."""
    return read_info(version_dir) if (version_dir / INFO_ASSET).is_file() else {}


def weights_digest(run_dir: Path) -> str:
    """SHA-256 of a run's final weights: what says that a version came from them."""
    digest = hashlib.sha256()
    with (run_dir / FINAL_WEIGHTS).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_published(base_path: Path, digest: str) -> Path | None:
    """The version folder, served or rolled back (.rollback-N), exported from these weights."""
    folders = list(version_dirs(base_path).values())
    folders += rolled_back_dirs(base_path).values()
    for folder in folders:
        if info_if_any(folder).get("source_weights_sha256") == digest:
            return folder
    return None


def check_exported_from(
    run_dir: Path, version_dir: Path, choose: str = "pass --version {name}"
) -> None:
    """Refuse a version exported from other weights than the run's (its recorded digest
    differs): a model card would give it the run's accuracy, an agreement check would compare
    two unrelated models. `choose` says how the caller's user picks another version ({name}:
    its number, {path}: its folder)."""
    info = read_info(version_dir)
    recorded = info.get("source_weights_sha256")
    if not recorded or not (run_dir / FINAL_WEIGHTS).is_file():
        return  # exported before versions recorded their weights: nothing to compare
    digest = weights_digest(run_dir)
    if digest == recorded:
        return
    source = info.get("source_run")
    match = find_published(version_dir.parent, digest)
    if match and match.name.isdigit():
        pick = choose.format(name=match.name, path=match)
        hint = f"{run_dir}'s weights are version {match.name}: {pick}"
    elif match:
        hint = f"{run_dir}'s weights were published and rolled back ({match.name})"
    else:
        hint = f"export {run_dir} first"
    came_from = f"it came from {source}" if source else "its run is not recorded"
    raise ValueError(
        f"version {version_dir.name} was not exported from {run_dir} (other weights; "
        f"{came_from}); {hint}"
    )
