"""Fixtures shared by every test area (owned by export; keep it small and fast).

* ``tiny_model_base``: a fresh base path ``<tmp>/cifar10`` holding version ``1/``, a small
  *untrained* model exported with the real signatures (``export.savedmodel``) and warm-up file.
* ``add_model_version(base_path, version, seed=None)``: publish another tiny version atomically
  (seed defaults to the version number, so versions answer differently; same seed, same answers).
* ``cifar_sample``: 300 real CIFAR-10 test JPEGs (30 per class) as bytes + labels + class names,
  read straight from ``../shared/data``; skips when the file is absent.
* ``tiny_run_dir``: a real 1-epoch ``training.train`` run on 1,024 images (~30-60 s, once).

TensorFlow is imported inside the fixtures, so areas that never use them (the proxy) do not
pay for it at collection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from training.config import SHARED_DATA

# One Hypothesis profile for every area, loaded here so that a test file gets the same
# examples whether it runs alone or in the whole suite: the same examples every run
# (FUZZ_RANDOM=1 draws new ones), FUZZ_EXAMPLES per test unless a test sets its own.
settings.register_profile(
    "project",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,  # real servers on a shared 2-core machine: time is not a property here
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
    database=None,  # write nothing into the repository
)
settings.load_profile("project")

# A shell without job control starts a background job (`cmd &`) with SIGINT ignored, and
# every child inherits that: the tests that press Ctrl-C on a training or an
# export then saw nothing happen and failed. Python's handler here is reset to the default at
# exec, so the children start as they would from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
CIFAR_TAR = SHARED_DATA


# A skip whose reason starts with this is about the host's kernel or privileges, which no
# install step can give (fanotify needs CAP_SYS_ADMIN): NO_SKIPS lets it through.
HOST_LIMIT = "this host cannot:"


def _fail_if_skipped(report):
    """With NO_SKIPS=1 (as .ci/run sets it), a skip fails: CI has the data, Chromium and the
    tools, so a skip there means a part went untested while the run stayed green."""
    if not report.skipped or os.environ.get("NO_SKIPS") != "1" or hasattr(report, "wasxfail"):
        return report
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if reason.removeprefix("Skipped: ").startswith(HOST_LIMIT):
        return report
    report.outcome = "failed"
    report.longrepr = f"skipped, and NO_SKIPS=1 allows no skip: {reason}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    return _fail_if_skipped((yield))


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (pytest.importorskip)."""
    return _fail_if_skipped((yield))


def _build_tiny_savedmodel(out_dir: Path, seed: int) -> Path:
    from export.savedmodel import save_savedmodel
    from export.untrained import untrained_model

    model, meta = untrained_model(seed)
    return save_savedmodel(model, meta, out_dir, tta=0)


@pytest.fixture(scope="session")
def tiny_savedmodel(tmp_path_factory) -> Callable[[int], Path]:
    """seed -> folder of a tiny SavedModel built once per session (copy it, do not modify it)."""
    built: dict[int, Path] = {}

    def get(seed: int = 1) -> Path:
        if seed not in built:
            folder = tmp_path_factory.mktemp(f"tiny{seed}") / "savedmodel"
            built[seed] = _build_tiny_savedmodel(folder, seed)
        return built[seed]

    return get


@pytest.fixture
def add_model_version(tiny_savedmodel) -> Callable[..., Path]:
    """Publish a tiny model as `version` under a base path (atomically, like `export`)."""
    from export.publish import publish_copy

    def add(base_path: Path, version: int, seed: int | None = None) -> Path:
        return publish_copy(tiny_savedmodel(version if seed is None else seed), base_path, version)

    return add


@pytest.fixture(scope="session")
def make_tiny_base(tmp_path_factory, tiny_savedmodel) -> Callable[..., Path]:
    """A new base path `<tmp>/cifar10` with tiny models as its versions (1 by default; each
    version's seed is its number), published as export publishes; for fixtures of any scope.
    Tests that share one must not change it."""
    from export.config import MODEL_NAME
    from export.publish import publish_copy

    def make(*versions: int) -> Path:
        base = tmp_path_factory.mktemp("models") / MODEL_NAME
        for version in versions or (1,):
            publish_copy(tiny_savedmodel(version), base, version)
        return base

    return make


@pytest.fixture
def tiny_model_base(tmp_path, add_model_version) -> Path:
    """`<tmp>/cifar10` with version 1 of the tiny model (seed 1)."""
    base = tmp_path / "cifar10"
    add_model_version(base, 1)
    return base


@pytest.fixture(scope="session")
def cifar_sample():
    """30 test JPEGs per class: `.data` (bytes), `.labels`, `.class_names`, `.names`."""
    if not CIFAR_TAR.exists():
        pytest.skip(f"{CIFAR_TAR} is absent")
    from export.encoded import read_encoded

    return read_encoded(CIFAR_TAR, "test").per_class(30)


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory) -> Path:
    """A finished (barely trained) run folder made by the real training CLI."""
    if not CIFAR_TAR.exists():
        pytest.skip(f"{CIFAR_TAR} is absent")
    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    cmd = [
        sys.executable, "-m", "training.train", "--data", str(CIFAR_TAR), "--run-dir", str(run_dir),
        "--train-subset", "1024", "--test-subset", "500", "--epochs", "1", "--batch-size", "256",
        "--precision", "float32",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not (run_dir / "meta.json").exists():
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        pytest.fail(f"training.train failed ({done.returncode}):\n{output}")
    return run_dir
