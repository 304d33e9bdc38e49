"""k8s/seed/seed-models.sh, the initContainer that seeds the models volume, run here with sh."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from deploy_files import K8S_DIR

SCRIPT = K8S_DIR / "seed" / "seed-models.sh"


def seed(src, dest) -> str:
    if shutil.which("sh") is None:
        pytest.skip("no POSIX sh")
    result = subprocess.run(
        ["sh", str(SCRIPT), str(src), str(dest)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def shipped(tmp_path):
    """An image's /seed/models/cifar10: versions 1 and 2 and a non-version folder."""
    src = tmp_path / "seed" / "cifar10"
    for name in ("1", "2", "notes"):
        (src / name / "variables").mkdir(parents=True)
        (src / name / "saved_model.pb").write_bytes(name.encode())
    return src


def test_first_start_copies_every_version_and_leaves_no_temp_folder(shipped, tmp_path):
    dest = tmp_path / "volume" / "cifar10"
    seed(shipped, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["1", "2"]
    assert (dest / "2" / "saved_model.pb").read_bytes() == b"2"
    assert (dest / "1" / "variables").is_dir()


def test_a_seeded_volume_is_never_reseeded(shipped, tmp_path):
    # Rollback removed version 2 from the volume; a pod restart must not bring it back.
    dest = tmp_path / "volume" / "cifar10"
    seed(shipped, dest)
    shutil.rmtree(dest / "2")
    assert "nothing to do" in seed(shipped, dest)
    assert [p.name for p in dest.iterdir()] == ["1"]


def test_temp_folders_of_an_interrupted_seed_do_not_count_as_versions(shipped, tmp_path):
    dest = tmp_path / "volume" / "cifar10"
    (dest / ".tmp-seed-1-otherpod-7").mkdir(parents=True)
    seed(shipped, dest)
    assert {"1", "2"} <= {p.name for p in dest.iterdir()}


def test_the_newest_version_is_seeded_first(tmp_path):
    # A seed cut short, or a second pod starting meanwhile, must find the version to serve:
    # "seeded" means "holds any version", and the model server serves the highest it finds.
    src = tmp_path / "seed" / "cifar10"
    for name in ("2", "10", "9"):
        (src / name).mkdir(parents=True)
    out = seed(src, tmp_path / "volume" / "cifar10")
    copied = [
        line.split()[2] for line in out.splitlines() if line.startswith("seed-models: version")
    ]
    assert copied == ["10", "9", "2"]
