"""Tiny end-to-end training on generated data: outputs, SIGTERM, SIGKILL + resume, evaluation."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hangup import with_hangup
from PIL import Image
from polling import eventually

from training.data import load_dataset
from training.run_folder import RunFolderError

pytestmark = pytest.mark.slow  # about ten real training runs

ROOT = Path(__file__).resolve().parents[2]
COLORS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200), "gray": (128,) * 3}


@pytest.fixture(scope="module", autouse=True)
def _dataset_cache_in_tmp(tmp_path_factory):
    """The training runs' decoded-image caches go to a temp folder, not the checkout's
    .cache/datasets, where each session's new temp tree would leave one behind."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATASET_CACHE_DIR", str(tmp_path_factory.mktemp("dataset-cache")))
        yield


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """4 colour classes with noise: learnable in a couple of epochs."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 96), ("test", 24)):
        for cls, rgb in COLORS.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for j in range(n):
                noise = rng.integers(-60, 60, (32, 32, 3))
                pixels = np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(d / f"{j}.png")
    return root


def train_cmd(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "training.train",
        "--data",
        str(data),
        "--run-dir",
        str(run_dir),
        "--recipe",
        "tiny",
        "--batch-size",
        "32",
        "--precision",
        "float32",
        *extra,
    ]


def run(cmd, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, **kw)


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "r"
    result = run(train_cmd(tiny_data, run_dir, "--epochs", "3"), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


def test_a_finished_run_has_every_output(finished_run, tiny_data):
    for name in (
        "final.weights.h5",
        "model.keras",
        "meta.json",
        "history.json",
        "curves.png",
        "train.log",
        "checkpoint.npz",
    ):
        assert (finished_run / name).exists(), name
    meta = json.loads((finished_run / "meta.json").read_text())
    assert meta["class_names"] == sorted(COLORS)
    assert len(meta["mean"]) == 3 and len(meta["std"]) == 3
    assert meta["seed"] == 0 and meta["images_per_second"] > 0
    from training.run import command_line
    from training.train import parse_args

    argv = train_cmd(tiny_data, finished_run, "--epochs", "3")[3:]
    assert meta["command"] == command_line(parse_args(argv), "float32", "kernel")
    assert meta["filter_grad"] == "kernel"  # auto: float32
    history = json.loads((finished_run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert meta["test_accuracy"] > 0.5  # 4 colour classes: far above 25 % chance


def test_the_runs_model_keras_file_opens_as_the_readme_says(finished_run):
    """README: `import training.layers` registers the custom layers that `model.keras` holds;
    the reopened model computes what the run's final weights compute."""
    import keras
    import numpy as np

    from training.run_model import load_for_inference

    reopened = keras.saving.load_model(finished_run / "model.keras")
    assert {type(layer).__name__ for layer in reopened.layers} >= {"Gelu", "BatchNormalization"}
    reference, _ = load_for_inference(finished_run)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(reopened(images), reference(images), rtol=1e-4, atol=1e-4)


def test_rerunning_a_finished_run_does_not_train_again(finished_run, tiny_data):
    result = run(train_cmd(tiny_data, finished_run, "--epochs", "3"), timeout=120)
    assert result.returncode == 0
    assert "already holds a finished run" in result.stdout


def test_ctrl_c_while_the_outputs_are_written_loses_none_of_them(tiny_data, tmp_path):
    """meta.json marks a run finished, so it is written last: a Ctrl-C while the curves were
    drawn once left a "finished" run without curves.png that no re-run would draw."""
    run_dir = tmp_path / "r"
    stop_while_plotting = (
        "import sys, training.run_outputs as run_outputs\n"
        "def interrupt(*args, **kwargs): raise KeyboardInterrupt\n"
        "run_outputs.plot_curves = interrupt\n"
        "from training.train import main\n"
        "main(sys.argv[1:])"
    )
    args = train_cmd(tiny_data, run_dir, "--epochs", "1")[3:]
    stopped = run([sys.executable, "-c", stop_while_plotting, *args], timeout=300)
    assert stopped.returncode == 130, stopped.stderr
    assert not (run_dir / "meta.json").exists()
    again = run(train_cmd(tiny_data, run_dir, "--epochs", "1"), timeout=300)
    assert again.returncode == 0, again.stderr
    assert "already holds a finished run" not in again.stdout
    assert re.search(r"resumed from checkpoint at step (\d+)/\1\b", again.stdout)  # all done
    for name in ("meta.json", "history.json", "curves.png", "final.weights.h5"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "meta.json").read_text())["final_evaluation_seconds"] > 0


def test_other_options_on_an_existing_run_are_refused(finished_run, tiny_data):
    result = run(train_cmd(tiny_data, finished_run, "--epochs", "5"), timeout=120)
    assert result.returncode != 0
    assert "holds a finished run made with other options (--epochs 3" in result.stderr
    assert "5.0 now" in result.stderr and "pick a new --run-dir" in result.stderr


def test_a_second_training_in_a_folder_in_use_is_refused(tiny_data, tmp_path):
    """Two trainings in one folder wrote the same checkpoint file (one crashed, the other's
    checkpoint could be a mix). The claim is an flock: held here as a running training would."""
    from training.run_folder import claim_run_dir

    run_dir = tmp_path / "busy"
    run_dir.mkdir()
    with claim_run_dir(run_dir), claim_run_dir(run_dir):  # re-entrant (bench.train -> train)
        result = run(train_cmd(tiny_data, run_dir, "--epochs", "1"), timeout=120)
    assert result.returncode != 0
    assert f"{run_dir} is in use by another training (pid {os.getpid()})" in result.stderr
    assert not (run_dir / "checkpoint.npz").exists()
    # Released (as by the kernel when a training exits, also after kill -9): it runs.
    assert run(train_cmd(tiny_data, run_dir, "--epochs", "1"), timeout=300).returncode == 0


def _start(cmd, output=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # SIGHUP as a terminal starts it, whatever this test run ignores (nohup, some CI runners).
    return subprocess.Popen(with_hangup(cmd, ignored=False), cwd=ROOT, stdout=output,
                            stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip


def _wait_for_checkpoint_mid_run(run_dir: Path, proc: subprocess.Popen, timeout=180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training ended before it could be interrupted"
        if (run_dir / "checkpoint.npz").exists():
            state = (run_dir / "train.log").read_text()
            # "epoch N/" is logged when epoch N ends: one done, two of the three to go.
            if "epoch 1/" in state:
                return
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


def _killed_mid_run(tiny_data: Path, run_dir: Path) -> list[str]:
    """A 3-epoch run SIGKILLed after its first epoch's checkpoint; its command, to resume."""
    cmd = train_cmd(tiny_data, run_dir, "--epochs", "3", "--checkpoint-every", "0.2")
    proc = _start(cmd)
    _wait_for_checkpoint_mid_run(run_dir, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "meta.json").exists()
    return cmd


def test_sigkill_then_rerun_resumes_from_the_checkpoint(tiny_data, tmp_path, finished_run):
    run_dir = tmp_path / "killed"
    cmd = _killed_mid_run(tiny_data, run_dir)
    result = run(cmd, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    resumed = [ln for ln in result.stdout.splitlines() if "resumed from checkpoint" in ln]
    assert resumed, result.stdout
    step = int(resumed[0].split("at step ")[1].split("/")[0])
    assert step > 0  # continued, not from scratch
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # Same weights, data order and augmentation seeds as the uninterrupted run, so the same
    # losses epoch by epoch, up to the summation order of multi-threaded kernels. (Accuracy
    # cannot tell: both runs score about 100 % on four colours.)
    uninterrupted = json.loads((finished_run / "history.json").read_text())
    for key in ("train_loss", "test_loss"):
        assert [h[key] for h in history] == pytest.approx(
            [h[key] for h in uninterrupted], rel=1e-3
        ), key


def test_a_resumed_run_finishes_with_the_recipe_it_started_with(tiny_data, tmp_path):
    """The code's recipe can change between a kill and the re-run (a pulled commit retuned
    it): the run goes on with the settings run.json kept, says what differs, and meta.json
    records those. Here run.json is edited to stand in for the older code's recipe. The re-run
    leaves out the --epochs 3 the run started with (as `make train` would): that is no change
    of the code's recipe, and the command recorded still repeats the run."""
    run_dir = tmp_path / "retuned"
    cmd = _killed_mid_run(tiny_data, run_dir)
    options = json.loads((run_dir / "run.json").read_text())
    assert options["recipe_settings"]["label_smoothing"] == 0.1  # tiny's, as the code has it
    options["recipe_settings"]["label_smoothing"] = 0.05
    (run_dir / "run.json").write_text(json.dumps(options))
    at = cmd.index("--epochs")
    result = run(cmd[:at] + cmd[at + 2 :], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    changed = [line for line in result.stdout.splitlines() if "has changed since" in line]
    assert changed == [
        "recipe tiny as this run started it; the code's has changed since: "
        "label_smoothing 0.05 then, 0.1 now"
    ]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["recipe"]["label_smoothing"] == 0.05 and meta["recipe"]["epochs"] == 3
    assert " --epochs 3" in meta["command"]


def test_recipe_settings_the_code_no_longer_has_or_never_recorded(tmp_path):
    from training.config import RECIPES, RunOptions
    from training.run_options import pin_run_options, recipe_as_started, record_run_options

    opts = RunOptions("x", str(tmp_path), recipe="tiny")
    pinned = pin_run_options(tmp_path, opts)
    assert recipe_as_started(pinned, opts) == (RECIPES["tiny"], None)  # a new run: the code's
    record_run_options(tmp_path, pinned, "f")
    (tmp_path / "checkpoint.npz").write_bytes(b"")

    def resumed_with(settings: dict | None):
        options = json.loads((tmp_path / "run.json").read_text())
        options["recipe_settings"] = settings
        if settings is None:  # a run.json from before recipes were recorded
            del options["recipe_settings"]
        (tmp_path / "run.json").write_text(json.dumps(options))
        return recipe_as_started(pin_run_options(tmp_path, opts), opts)

    tiny = RECIPES["tiny"]
    # Recorded by an older code: widths as JSON lists, no lr yet (tiny's differs from the
    # dataclass default, so taking the default would show).
    older = {k: v for k, v in json.loads(json.dumps(tiny.to_dict())).items() if k != "lr"}
    recipe, note = resumed_with({**older, "widths": [8, 16, 16]})
    assert recipe.widths == (8, 16, 16) and recipe.lr == tiny.lr == 3.0
    assert note == (
        "recipe tiny as this run started it; the code's has changed since: "
        f"lr not recorded then, 3.0 now; widths (8, 16, 16) then, {tiny.widths!r} now"
    )
    with pytest.raises(RunFolderError, match=r"no longer has \(retired_knob\)"):
        resumed_with({**older, "retired_knob": 1})
    with pytest.raises(RunFolderError, match=r"refuses \(unknown optimizer 'rmsprop'"):
        resumed_with({**older, "optimizer": "rmsprop"})
    recipe, note = resumed_with(None)
    assert recipe == tiny and "recorded no recipe settings" in note and "may differ" in note


def test_the_data_moved_elsewhere_still_resumes_its_run(tiny_data, tmp_path):
    """`mv` of the data (or another mount point for it) was refused as other options; its
    fingerprint (a file's content, a folder's image files) says it is the same data. Other
    data elsewhere (one image differs) is still refused."""
    import shutil

    from training.config import RunOptions
    from training.run_options import pin_run_options, read_run_options, record_run_options

    data = shutil.copytree(tiny_data, tmp_path / "data")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    opts = RunOptions(str(data), str(run_dir), recipe="tiny")
    record_run_options(run_dir, pin_run_options(run_dir, opts), "float32")
    (run_dir / "checkpoint.npz").write_bytes(b"")
    moved = data.rename(tmp_path / "moved")
    pinned = pin_run_options(run_dir, replace(opts, data=str(moved)))
    record_run_options(run_dir, pinned, "float32")
    assert read_run_options(run_dir)["data"] == str(moved)  # where it is now
    other = shutil.copytree(moved, tmp_path / "other")
    (other / "train/red/0.png").write_bytes((tiny_data / "test/red/0.png").read_bytes())
    with pytest.raises(RunFolderError, match=r"was started with other options \(--data"):
        pin_run_options(run_dir, replace(opts, data=str(other)))


def test_other_data_at_the_same_path_is_refused(tiny_data, tmp_path, monkeypatch):
    """The fingerprint was compared only when the path differed: data replaced in place, or
    the same relative path typed in another folder, resumed the run on other images and the
    new fingerprint was written over the old one."""
    import shutil

    from training.config import RunOptions
    from training.run_options import pin_run_options, record_run_options

    data = shutil.copytree(tiny_data, tmp_path / "data")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.chdir(tmp_path)
    opts = RunOptions("data", str(run_dir), recipe="tiny")  # relative, as typed
    record_run_options(run_dir, pin_run_options(run_dir, opts), "float32")
    (run_dir / "checkpoint.npz").write_bytes(b"")
    pin_run_options(run_dir, opts)  # the same files: resumes
    elsewhere = tmp_path / "elsewhere"
    other = shutil.copytree(tiny_data, elsewhere / "data")
    (other / "train/red/0.png").write_bytes((tiny_data / "test/red/0.png").read_bytes())
    monkeypatch.chdir(elsewhere)  # "data" now names other images
    with pytest.raises(RunFolderError, match=r"--data \S*\d/data then, \S*/elsewhere/data now"):
        pin_run_options(run_dir, opts)
    monkeypatch.chdir(tmp_path)
    (data / "train/red/0.png").write_bytes((tiny_data / "test/red/0.png").read_bytes())
    with pytest.raises(RunFolderError, match=r"--data \S*/data holds other files .*fingerprint"):
        pin_run_options(run_dir, opts)  # replaced in place
    # Older code recorded no fingerprint and the path as typed: "data" is resolved as the run
    # resolved it (its data_path), not in today's folder.
    record = json.loads((run_dir / "run.json").read_text())
    del record["data_fingerprint"]
    (run_dir / "run.json").write_text(json.dumps(record))
    pin_run_options(run_dir, opts)  # here, the same folder: the same run as far as can be told
    monkeypatch.chdir(elsewhere)
    with pytest.raises(RunFolderError, match=r"then, \S*/elsewhere/data now"):
        pin_run_options(run_dir, opts)


def test_an_archive_replaced_in_place_is_refused_without_a_dates_hint(tmp_path):
    """An archive's fingerprint is its content, so no copy of the same images differs: the
    hint to delete the fingerprint (which would resume on the other archive) is not given."""
    from training.config import RunOptions
    from training.run_options import pin_run_options, record_run_options

    archive = tmp_path / "data.tar.gz"
    archive.write_bytes(b"first")
    opts = RunOptions(str(archive), str(tmp_path), recipe="tiny")
    record_run_options(tmp_path, pin_run_options(tmp_path, opts), "float32")
    (tmp_path / "checkpoint.npz").write_bytes(b"")
    archive.write_bytes(b"other")
    with pytest.raises(RunFolderError) as refused:
        pin_run_options(tmp_path, opts)
    assert "data.tar.gz holds other files than when the run started)" in str(refused.value)
    assert "fingerprint" not in str(refused.value)


def test_a_damaged_run_json_is_a_sentence_and_is_written_whole(tmp_path, monkeypatch):
    """run.json was rewritten in place at every sitting: cut short by a kill at start-up, the
    next run stopped with a JSONDecodeError traceback though its checkpoint was intact."""
    from training.config import RunOptions
    from training.run_options import pin_run_options, record_run_options

    opts = RunOptions("x", str(tmp_path), recipe="tiny")
    record_run_options(tmp_path, pin_run_options(tmp_path, opts), "float32")
    (tmp_path / "checkpoint.npz").write_bytes(b"")
    (tmp_path / "run.json").write_text('{"data": "x", "re')
    with pytest.raises(RunFolderError, match=r"run.json cannot be read .* checkpoint is intact"):
        pin_run_options(tmp_path, opts)
    written = []  # the record goes through a file beside it, renamed into place
    real = Path.replace
    monkeypatch.setattr(
        Path, "replace", lambda p, t: written.append((p.name, t.name)) or real(p, t)
    )
    record_run_options(tmp_path, {"data": "x"}, "float32")
    assert written == [(".run.json.tmp", "run.json")]


def test_an_option_left_out_is_the_recipe_as_the_run_recorded_it(tmp_path, monkeypatch):
    """After the code's recipe changed its epochs, spelling out the epochs the run started
    with is the same run (it was refused), and the message shows the recorded value."""
    from training.config import RECIPES, RunOptions
    from training.run_options import pin_run_options, record_run_options

    opts = RunOptions("x", str(tmp_path), recipe="tiny")
    record_run_options(tmp_path, pin_run_options(tmp_path, opts), "f")
    (tmp_path / "checkpoint.npz").write_bytes(b"")
    started = RECIPES["tiny"].epochs
    monkeypatch.setitem(RECIPES, "tiny", replace(RECIPES["tiny"], epochs=started + 3))
    pin_run_options(tmp_path, opts)
    pin_run_options(tmp_path, replace(opts, epochs=started))
    with pytest.raises(RunFolderError, match=rf"--epochs {started} \(the recipe's\) then"):
        pin_run_options(tmp_path, replace(opts, epochs=started + 3))


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tiny_data, tmp_path):
    run_dir = tmp_path / "term"
    proc = _start(train_cmd(tiny_data, run_dir, "--epochs", "50", "--checkpoint-every", "1000"))
    _wait_for_checkpoint_mid_run(run_dir, proc)
    before = (run_dir / "checkpoint.npz").stat().st_mtime_ns
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, out  # as a shell reports it: 143
    # Said at once (a step or an evaluation can take seconds), then done.
    stopping = out.index("stopping: a checkpoint is saved when the current step")
    assert stopping < out.index("interrupted: checkpoint saved at step")
    assert "Re-run the same command to resume" in out
    assert (run_dir / "checkpoint.npz").stat().st_mtime_ns > before


def test_a_closed_terminal_saves_a_checkpoint_too(tiny_data, tmp_path):
    """The training writes to a real terminal (a pty); the terminal goes (its other side is
    closed, so every write to it fails with EIO) and SIGHUP comes, as when a window or an SSH
    session closes. The checkpoint is written and train.log says so."""
    import pty

    run_dir = tmp_path / "hup"
    terminal, side = pty.openpty()
    proc = _start(train_cmd(tiny_data, run_dir, "--epochs", "50", "--checkpoint-every", "1000"),
                  output=side)  # fmt: skip
    os.close(side)
    reading = threading.Event()
    reading.set()
    reader = threading.Thread(target=_drain, args=(terminal, reading), daemon=True)
    reader.start()
    _wait_for_checkpoint_mid_run(run_dir, proc)
    before = (run_dir / "checkpoint.npz").stat().st_mtime_ns
    reading.clear()
    reader.join()  # no read may be pending: it would keep the terminal open past close()
    os.close(terminal)
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 128 + signal.SIGHUP  # 129, not a crash on the dead terminal
    assert (run_dir / "checkpoint.npz").stat().st_mtime_ns > before
    assert "interrupted: checkpoint saved at step" in (run_dir / "train.log").read_text()


def _drain(fd: int, reading: threading.Event) -> None:
    """Reads a pty's output while `reading` is set (a full pty would block the writer)."""
    import select

    while reading.is_set():
        if select.select([fd], [], [], 0.1)[0]:
            with contextlib.suppress(OSError):
                os.read(fd, 4096)


def test_a_run_is_evaluated_on_your_own_photos_of_some_of_its_classes(
    finished_run, tiny_data, tmp_path
):
    """A folder of test/<class>/ photos without a train/ split (your own) was refused for a
    run folder ("no usable training images"); a SavedModel took it. Two of the run's four
    classes, and a text file named .png that is skipped and named."""
    import shutil

    from training.evaluate import evaluate_run
    from training.run_model import load_for_inference

    photos = tmp_path / "photos"
    for cls in ("blue", "red"):
        shutil.copytree(tiny_data / "test" / cls, photos / "test" / cls)
    (photos / "test/red/notes.png").write_text("not an image")
    report = evaluate_run(finished_run, str(photos))
    assert report["test_images"] == 48 and report["data"] == str(photos)
    per_class = report["tta_none"]["per_class"]
    assert [per_class[c]["support"] for c in ("blue", "gray", "green", "red")] == [24, 0, 0, 24]
    model, meta = load_for_inference(finished_run)
    images = np.stack([np.array(Image.open(f).convert("RGB"))
                       for c in ("blue", "red") for f in sorted((photos / "test" / c).glob("*"))
                       if f.name != "notes.png"])  # fmt: skip
    labels = np.repeat([meta["class_names"].index(c) for c in ("blue", "red")], 24)
    direct = np.mean(np.argmax(model.predict(images.astype("float32"), verbose=0), 1) == labels)
    assert report["tta_none"]["accuracy"] == pytest.approx(direct)


def test_evaluation_report_agrees_with_a_direct_computation(finished_run, tiny_data, tmp_path):
    result = run(
        [
            sys.executable,
            "-m",
            "training.evaluate",
            str(finished_run),
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path),
            "--headline",
            "flip",
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert (tmp_path / "confusion.png").exists()
    assert "Per class (flip):" in (tmp_path / "evaluation.md").read_text()
    from runtime.cpu import describe_cpu

    assert report["cpu"] == describe_cpu()  # the machine beside its `seconds`
    assert f" s on {describe_cpu()}." in (tmp_path / "evaluation.md").read_text()

    from training.data import load_dataset
    from training.run_model import load_for_inference

    model, _ = load_for_inference(finished_run)
    ds = load_dataset(tiny_data, cache_dir=None)
    predicted = np.argmax(model.predict(ds.test.images.astype("float32"), verbose=0), axis=1)
    direct = float(np.mean(predicted == ds.test.labels))
    assert report["tta_none"]["accuracy"] == pytest.approx(direct, abs=1e-9)
    matrix = np.array(report["tta_none"]["confusion_matrix"])
    assert matrix.sum() == len(ds.test.labels)
    assert np.trace(matrix) == round(direct * len(ds.test.labels))
    meta = json.loads((finished_run / "meta.json").read_text())
    assert report["tta_none"]["accuracy"] == pytest.approx(meta["test_accuracy"], abs=1e-9)


def test_a_class_never_predicted_has_no_precision_not_zero():
    """Its precision is 0/0: the reports printed 0.00 %, as if every call of it were wrong."""
    from training.metrics import share, summarize

    report = summarize(np.array([0, 0, 1]), np.array([0, 0, 0]), ["a", "b", "c"])["per_class"]
    assert report["a"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "support": 2}
    assert report["b"] == {"precision": None, "recall": 0.0, "support": 1}
    assert report["c"] == {"precision": None, "recall": None, "support": 0}  # none in the test set
    assert [share(report["b"][k]) for k in ("precision", "recall")] == ["–", "0.00%"]


def test_the_recorded_command_repeats_the_run_whoever_started_it(tmp_path):
    from training.run import command_line
    from training.train import parse_args

    argv = ["--data", "d dir/x.tar", "--run-dir", str(tmp_path), "--recipe", "long"]
    argv += ["--seed", "3", "--epochs", "0.5", "--test-subset", "100"]
    opts = parse_args(argv)
    command = command_line(opts, "mixed_bfloat16", "matmuls")
    assert command.startswith("python -m training.train ")
    again = parse_args(shlex.split(command)[3:])
    assert again == replace(opts, precision="mixed_bfloat16", filter_grad="matmuls")


def test_options_pin_once_a_run_has_trained_and_a_renamed_folder_still_resumes(tmp_path):
    from training.config import RunOptions
    from training.run_options import pin_run_options, record_run_options

    first = tmp_path / "a"
    first.mkdir()
    record_run_options(first, pin_run_options(first, RunOptions("x", str(first), seed=1)), "f")
    # No checkpoint yet: nothing trained, so other options are taken (a mistyped --data).
    assert pin_run_options(first, RunOptions("y", str(first), seed=2))["seed"] == 2
    (first / "checkpoint.npz").write_bytes(b"")
    renamed = first.rename(tmp_path / "b")
    pinned = pin_run_options(renamed, RunOptions("x", str(renamed), seed=1))
    assert pinned["run_dir"] == str(renamed) and pinned["resolved_precision"] == "f"
    with pytest.raises(RunFolderError, match="other options"):
        pin_run_options(renamed, RunOptions("x", str(renamed), seed=2))


def test_a_resumed_run_keeps_the_precision_and_filter_gradients_it_started_with(tmp_path):
    """`auto` resolves once: a run started with TensorFlow's filter-gradient kernel is not
    switched to the nine matmuls halfway by a plain re-run, whatever this machine would pick."""
    from training.config import RunOptions
    from training.run import machine_choices
    from training.run_options import pin_run_options, record_run_options

    opts = RunOptions("x", str(tmp_path), precision="float32", filter_grad="kernel")
    record_run_options(tmp_path, pin_run_options(tmp_path, opts), "mixed_bfloat16", "kernel")
    (tmp_path / "checkpoint.npz").write_bytes(b"")
    again = replace(opts, precision="auto", filter_grad="auto")
    pinned = pin_run_options(tmp_path, again)
    fixed = "fixed when this run started"
    assert machine_choices(pinned, again, "fast") == (
        ("mixed_bfloat16", fixed),
        ("kernel", fixed),
    )
    asked = replace(again, filter_grad="matmuls")
    assert machine_choices(pinned, asked, "fast")[1] == (
        "kernel",
        f"{fixed}; --filter-grad matmuls applies to a new run folder only",
    )
    del pinned["resolved_filter_grad"]  # a run recorded before the option: TensorFlow's kernel
    assert machine_choices(pinned, again, "fast")[1][0] == "kernel"
    # A new run resolves both now.
    assert machine_choices({}, replace(opts, filter_grad="matmuls"), "fast") == (
        ("float32", "asked for"),
        ("matmuls", "asked for"),
    )


def test_options_are_compared_as_the_run_uses_them(tmp_path, monkeypatch):
    """The recipe's own epochs spelt out, or the same data file by another path, is the same
    run (both were refused); another number of epochs is not."""
    from training.config import RECIPES, RunOptions
    from training.run_options import pin_run_options, record_run_options

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.tar").write_bytes(b"")
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    first = RunOptions("data.tar", str(run_dir), recipe="tiny")
    record_run_options(run_dir, pin_run_options(run_dir, first), "f")
    (run_dir / "checkpoint.npz").write_bytes(b"")
    tiny = RECIPES["tiny"]
    same = RunOptions(str(tmp_path / "data.tar"), str(run_dir), recipe="tiny",
                      epochs=tiny.epochs, batch_size=tiny.batch_size)  # fmt: skip
    assert pin_run_options(run_dir, same)["data"] == same.data  # run.json: where it is now
    with pytest.raises(RunFolderError, match="epochs"):
        pin_run_options(run_dir, RunOptions("data.tar", str(run_dir), recipe="tiny", epochs=9))


@pytest.mark.parametrize(
    "flag",
    [
        ["--epochs", "0"],
        ["--epochs", "-3"],
        ["--batch-size", "0"],
        ["--train-subset", "0"],  # was a ZeroDivisionError traceback
        ["--test-subset", "0"],  # was a "finished" run with NaN accuracies in meta.json
        ["--train-subset", "-5"],
        ["--checkpoint-every", "0"],
        ["--epochs", "nan"],  # was a traceback once TensorFlow had started
        ["--epochs", "inf"],
        ["--seed", "-1"],  # was a NumPy traceback
        ["--seed", str(2**31)],  # was a TensorFlow one (the step seed is an int32)
    ],
)
def test_zero_negative_or_non_finite_numbers_are_refused(flag, capsys):
    from training.train import parse_args

    with pytest.raises(SystemExit) as caught:
        parse_args(["--run-dir", "/tmp/unused", *flag])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert flag[0] in error and "must be" in error
    # One line, not argparse's usage block first (eleven lines that buried it).
    assert error.startswith("python -m training.train: argument ") and error.count("\n") == 1
    assert error.endswith("(--help lists the options)\n")


def test_a_data_error_is_told_once_and_kept_in_train_log(tmp_path):
    """Data that exists but holds no images fails after the run folder is made: the terminal
    gets one line, and train.log (what a student reads later) says why the run stopped."""
    empty = tmp_path / "photos"
    (empty / "train" / "cat").mkdir(parents=True)  # a tree, but no image in it
    run_dir = tmp_path / "r"
    result = run(train_cmd(empty, run_dir), timeout=300)
    assert result.returncode == 1
    [line] = [x for x in result.stderr.splitlines() if "data error" in x]
    assert "data error" not in result.stdout
    log = (run_dir / "train.log").read_text()
    assert f"stopped: {line}" in log


def test_a_file_that_is_no_data_set_is_refused_before_start_up(tiny_data, tmp_path):
    """Refused only after the precision timing, leaving a run folder behind (an audit)."""
    junk = tmp_path / "cifar.tar.gz"
    junk.write_text("not an archive")
    cmd = train_cmd(tiny_data, tmp_path / "r", "--epochs", "2")
    cmd[cmd.index(str(tiny_data))] = str(junk)
    done = run(cmd, timeout=300)
    assert done.returncode != 0
    assert "is neither a folder, a .tar/.tar.gz archive" in done.stderr
    assert "precision" not in done.stdout and not (tmp_path / "r").exists()


def test_a_folder_without_image_folders_is_refused_with_what_it_holds(tmp_path):
    """`--data ../shared/data` (the folder README names) passed, spent the precision timing,
    then said "no usable training images" with no word of the archive lying in it."""
    from training.data import DataError, check_source

    (tmp_path / "cifar10-jpeg.tar.gz").write_bytes(b"")
    (tmp_path / "README.md").write_text("")
    with pytest.raises(DataError, match=r"holds cifar10-jpeg\.tar\.gz: pass that file"):
        check_source(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty holds no image folders \(<root>"):
        check_source(empty)
    # The unpacked CIFAR-10 python archive holds files only, and is a data set.
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    for name in ("batches.meta", "data_batch_1", "test_batch"):
        (batches / name).write_bytes(b"")
    assert check_source(batches) == batches


def test_a_wrong_data_path_can_be_corrected_in_the_same_run_folder(tiny_data, tmp_path):
    """Nothing trained yet, so nothing is pinned: the second try trains. It also trains in
    bfloat16 and checks that meta.json's accuracy is the float32 model's in the form export
    serves (BatchNorm folded into the convs)."""
    run_dir = tmp_path / "r"
    cmd = train_cmd(tiny_data, run_dir, "--epochs", "2")
    cmd[cmd.index("float32")] = "mixed_bfloat16"
    wrong = list(cmd)
    wrong[wrong.index(str(tiny_data))] = str(tmp_path / "no-such-data")
    first = run(wrong, timeout=300)
    assert first.returncode != 0 and "data source not found" in first.stderr
    assert "precision" not in first.stdout  # said before TensorFlow's start-up and timing
    assert not run_dir.exists()  # and no run folder made for nothing
    second = run(cmd, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["data"] == str(tiny_data) and meta["precision"] == "mixed_bfloat16"
    assert "test accuracy (float32, as exported)" in second.stdout

    from training.data import load_dataset
    from training.inference import predict_logits
    from training.run_model import load_for_inference

    model, _ = load_for_inference(run_dir, served=True)
    assert model.dtype_policy.name == "float32" and model.name == "fast_folded"  # as exported
    ds = load_dataset(tiny_data, cache_dir=None)
    served = float(np.mean(predict_logits(model, ds.test.images).argmax(1) == ds.test.labels))
    assert meta["test_accuracy"] == served


def test_a_run_dir_that_is_a_file_gets_a_sentence_not_a_traceback(tiny_data, tmp_path):
    in_the_way = tmp_path / "runs"
    in_the_way.write_text("")
    result = run(train_cmd(tiny_data, in_the_way / "r"), timeout=60)
    assert result.returncode == 1
    assert "a file is in the way" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_before_training_starts_is_a_sentence_and_a_log_line(
    tiny_data, tmp_path, stop, code
):
    """Ctrl-C or SIGTERM (`docker stop`) while TensorFlow loads (train.log appears once the
    run folder is made, before that): no traceback, the shell's code for the signal as for an
    interrupted training loop, and train.log says so (it ended without a word; SIGTERM ended
    the process at once). Started without TF_CPP_MIN_LOG_LEVEL, so TensorFlow's start-up
    lines go to tensorflow.log, not stderr."""
    run_dir = tmp_path / "r"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.Popen(
        train_cmd(tiny_data, run_dir, "--epochs", "50"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    eventually((run_dir / "tensorflow.log").exists, timeout=60, what="TensorFlow's start-up")
    proc.send_signal(stop)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, out + err
    assert "epoch 1" not in out and "checkpoint" not in out  # it came before any training
    assert "re-run the same command" in (out + err).lower()
    assert "Traceback" not in err and "InitializeLog" not in err, err
    last = (run_dir / "train.log").read_text().splitlines()[-1]
    assert re.fullmatch(  # dated: a run's sittings can be days apart
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  interrupted: Nothing is lost: re-run the same "
        r"command to go on\.",
        last,
    ), last


def test_an_unfinished_run_cannot_be_exported_or_evaluated(tmp_path, capsys):
    from export.__main__ import main as export_main
    from training.evaluate import main as evaluate_main

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    assert export_main(["--run-dir", str(run_dir), "--base-path", str(tmp_path / "b")]) == 1
    assert "holds no finished run" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="training has not finished"):
        evaluate_main([str(run_dir), "--data", str(tmp_path / "unused")])
    assert not (tmp_path / "b").exists()
    # A run that stopped before it recorded its options (a data error) left only its log.
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "train.log").write_text("data error: ...\n")
    # One sentence from each tool: evaluate said "has not finished ..., and it is no training
    # run folder either", export "it is not a training run folder".
    with pytest.raises(SystemExit, match="training has not finished") as said:
        evaluate_main([str(stopped), "--data", str(tmp_path / "unused")])
    assert "no training run folder" not in str(said.value)
    assert export_main(["--run-dir", str(stopped), "--base-path", str(tmp_path / "b")]) == 1
    assert "its training has not finished: re-run" in capsys.readouterr().err
    from export.predict import main as predict_main

    assert predict_main([str(ROOT / "README.md"), "--model", str(stopped)]) == 2
    assert "has not finished (see its train.log)" in capsys.readouterr().err
    # --out naming a file is refused before the minutes of scoring, not after them.
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit, match=r"--out .*afile is a file"):
        evaluate_main([str(run_dir), "--out", str(tmp_path / "afile")])
    with pytest.raises(SystemExit, match=r"cannot write the report in /proc/cifar10-report \("):
        evaluate_main([str(run_dir), "--out", "/proc/cifar10-report"])  # nobody writes there


def test_export_names_a_missing_run_folder_and_a_base_path_that_is_a_file(tmp_path, capsys):
    from export.__main__ import main as export_main

    assert export_main(["--run-dir", str(tmp_path / "nope"), "--base-path", str(tmp_path)]) == 1
    assert f"--run-dir {tmp_path / 'nope'} was not found; name a training run folder" in (
        capsys.readouterr().err
    )
    (tmp_path / "file").write_text("")
    assert export_main(["--run-dir", str(tmp_path), "--base-path", str(tmp_path / "file")]) == 1
    assert "is a file, not a folder of versions" in capsys.readouterr().err


def test_evaluate_scores_the_test_images_the_run_picked(tiny_data, tmp_path, monkeypatch):
    """--test-subset picks by the run's seed; evaluate used seed 0 whatever the run's was, so
    its figures disagreed with meta.json's. Unasked, it also takes the run's own data and
    subset (it scored all the test images of DEFAULT_DATA: other figures again)."""
    import functools

    from training import evaluate
    from training.evaluate import evaluate_run

    # In this process the default cache folder was fixed at import: no cache, not the checkout's.
    monkeypatch.setattr(evaluate, "load_dataset", functools.partial(load_dataset, cache_dir=None))

    run_dir = tmp_path / "r"
    cmd = train_cmd(tiny_data, run_dir, "--epochs", "1", "--seed", "3", "--test-subset", "40")
    done = run(cmd, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "final evaluation: 40 test images" in done.stdout
    # One sweep scores every TTA level (their passes shared), then says each level's figure.
    level = r"  TTA flip\+translate: accuracy \d{1,3}\.\d\d%\n"
    for line in (level, r"\(\d+ s for all 3 levels, 6 passes per image\)"):
        assert re.search(line, done.stdout), done.stdout
    meta = json.loads((run_dir / "meta.json").read_text())
    report = evaluate_run(run_dir)
    assert report["test_images"] == 40 and report["data"] == str(tiny_data)
    assert report["seconds"] > 0  # one time for the sweep that scored every level
    assert [report[f"tta_{n}"]["accuracy"] for n in ("none", "flip", "flip+translate")] == [
        pytest.approx(meta[k], abs=1e-9)
        for k in ("test_accuracy", "test_accuracy_flip", "test_accuracy_tta")
    ]


def test_a_savedmodel_is_not_scored_on_a_subset_it_cannot_pick(tmp_path):
    """--test-subset picks by a run's seed, which a SavedModel does not carry: refused, where
    it was ignored (the whole test set was scored under the asked-for subset's name)."""
    result = run(
        [sys.executable, "-m", "training.evaluate", str(ROOT / "models" / "cifar10"),
         "--test-subset", "100"],
        timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "--test-subset and --headline apply to a run folder" in result.stderr


def test_the_default_data_is_found_from_any_folder(tmp_path, monkeypatch):
    from training.config import DEFAULT_DATA, SHARED_DATA, default_data

    if not SHARED_DATA.exists():
        pytest.skip(f"needs the shared data set at {SHARED_DATA}")
    monkeypatch.chdir(ROOT)
    assert default_data() == DEFAULT_DATA  # as typed, from the project root (make)
    monkeypatch.chdir(tmp_path)
    assert default_data() == str(SHARED_DATA)  # its absolute path from anywhere else


def test_run_folders_and_model_folders_are_not_taken_for_each_other(finished_run, tmp_path, capsys):
    from export.__main__ import main as export_main
    from export.predict import main as predict_main
    from training.run_folder import make_run_dir

    assert predict_main([str(ROOT / "README.md"), "--model", str(finished_run)]) == 2
    assert f"{finished_run} is a training run folder, not a model: export it first" in (
        capsys.readouterr().err
    )
    assert export_main(["--run-dir", str(finished_run), "--base-path", str(finished_run)]) == 1
    assert f"--base-path {finished_run} is a training run folder" in capsys.readouterr().err
    with pytest.raises(RunFolderError, match="holds exported model versions"):
        make_run_dir(str(ROOT / "models" / "cifar10"))
    # A folder of other files (photos): the run's files went in among them without a word.
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        (photos / name).write_bytes(b"")
    with pytest.raises(
        RunFolderError, match=r"holds other files \(a\.jpg, b\.jpg, c\.jpg, \.\.\.\)"
    ):
        make_run_dir(str(photos))
    # What bench.train writes before train() makes the folder again (its ceiling timings),
    # hidden files and a volume root's lost+found are not "other files": a fresh bench run
    # was refused after its minutes of measuring.
    from training.run_folder import BENCH_CEILINGS

    bench = tmp_path / "bench-fast-0"
    make_run_dir(str(bench))
    for name in (BENCH_CEILINGS, ".DS_Store"):
        (bench / name).write_text("{}")
    (bench / "lost+found").mkdir()
    assert make_run_dir(str(bench)) == bench
    # An empty --run-dir (an unset shell variable) trained into the current folder, and
    # export then published that.
    for command in (export_main, predict_main):
        with pytest.raises(SystemExit) as refused:
            command(["--run-dir" if command is export_main else "--model", "", "x.jpg"])
        assert refused.value.code == 2 and "is empty" in capsys.readouterr().err
    with pytest.raises(RunFolderError, match=r"holds the model base path .*cifar10"):
        make_run_dir(str(ROOT / "models"))  # training wrote its files beside cifar10/
    # Paths that are files or missing say so, not "no numbered version folder".
    assert predict_main([str(ROOT / "README.md"), "--model", str(ROOT / "README.md")]) == 2
    assert "README.md is a file; name a version folder" in capsys.readouterr().err
    assert predict_main([str(ROOT / "README.md"), "--model", str(tmp_path / "nothing")]) == 2
    assert f"{tmp_path / 'nothing'} not found" in capsys.readouterr().err
    assert export_main(["--run-dir", str(ROOT / "README.md")]) == 1
    assert "README.md is a file; name a training run folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # --data only serves --tflite
        export_main(["--run-dir", str(finished_run), "--data", "x"])
    assert refused.value.code == 2 and "add --tflite" in capsys.readouterr().err
    # A version number no model server can load is refused before TensorFlow starts.
    for version in ("99999999999999999999", "-3"):
        with pytest.raises(SystemExit) as refused:
            export_main(["--run-dir", str(finished_run), "--version", version])
        assert refused.value.code == 2
        assert "--version: must be" in capsys.readouterr().err
    # A run folder beside the versions: the model server would load a numbered one as a version.
    base = tmp_path / "models" / "cifar10"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(RunFolderError, match="is inside the model base path"):
        make_run_dir(str(base / "2"))
    assert not (base / "2").exists()
    # A named folder there is no version to anyone: allowed, as beside any other SavedModel.
    assert make_run_dir(str(base / "run-a")).is_dir()


def test_a_newest_version_folder_that_is_no_model_is_named(finished_run, tmp_path, capsys):
    """A run folder moved into a base path as its newest "version": predict and evaluate
    stopped with a traceback about a missing assets/model_info.json."""
    from export.predict import main as predict_main
    from training.evaluate import main as evaluate_main

    base = tmp_path / "cifar10"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"")  # never loaded: the check comes first
    shutil.copytree(finished_run, base / "2")
    message = "the newest version folder in {}, 2, holds no saved_model.pb (a training run folder)"
    assert predict_main([str(ROOT / "README.md"), "--model", str(base)]) == 2
    assert message.format(base) in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        evaluate_main([str(base)])
    assert message.format(base) in str(exited.value)


def test_a_failed_final_write_is_a_sentence_and_the_same_command_finishes(tiny_data, tmp_path):
    """A full disk while the outputs were written (model.keras, the curves) ended in a
    traceback; the write fails for real here on a folder in the file's way."""
    run_dir = tmp_path / "r"
    (run_dir / "model.keras").mkdir(parents=True)
    (run_dir / "train.log").write_text("")  # a run folder: one of other files is refused
    failed = run(train_cmd(tiny_data, run_dir, "--epochs", "1"), timeout=300)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    expected = f"output error: the run's outputs stopped at {run_dir / 'model.keras'} ("
    assert expected in failed.stderr and "re-run the same command to finish" in failed.stderr
    assert f"stopped: {expected}" in (run_dir / "train.log").read_text()
    assert not (run_dir / "meta.json").exists()
    (run_dir / "model.keras").rmdir()
    again = run(train_cmd(tiny_data, run_dir, "--epochs", "1"), timeout=300)
    assert again.returncode == 0, again.stderr
    assert re.search(r"resumed from checkpoint at step (\d+)/\1\b", again.stdout)  # all done
    assert (run_dir / "meta.json").is_file() and (run_dir / "model.keras").is_file()


def test_a_run_dir_that_cannot_be_written_gets_a_sentence(tmp_path):
    """A read-only mount raised OSError, not PermissionError: a traceback, as did an existing
    folder the lock file cannot be made in. /proc stands in for a folder nobody can write."""
    from training.run_folder import RunFolderError, claim_run_dir, make_run_dir

    with pytest.raises(RunFolderError, match=r"--run-dir /proc/cifar10-run: cannot create it"):
        make_run_dir("/proc/cifar10-run")
    lock_refused = pytest.raises(RunFolderError, match=r"/proc/self: cannot write in it")
    with lock_refused, claim_run_dir(Path("/proc/self")):
        pass


def test_the_curves_show_the_final_weights_accuracy(tmp_path, monkeypatch):
    """With the lookahead EMA the final weights are not the last epoch's, so the reported
    accuracy was nowhere on the curves that sit beside it in the model card."""
    import matplotlib.pyplot as plt

    from training import plots

    drawn = []
    monkeypatch.setattr(plots.plt, "close", drawn.append)
    rows = [
        {"epoch": e, "train_loss": 1 / e, "test_loss": 1 / e, "train_accuracy": 0.5 + e / 10,
         "test_accuracy": 0.4 + e / 10}
        for e in (1, 2, 3)
    ]  # fmt: skip
    plots.plot_curves(rows, tmp_path / "curves.png", final_accuracy=0.7512)
    [figure] = drawn
    legend = [t.get_text() for t in figure.axes[1].get_legend().get_texts()]
    assert legend == ["train (augmented)", "test", "final weights, test: 75.12%"]
    plt.close(figure)


def test_the_final_line_above_every_point_has_room_above_it(tmp_path, monkeypatch):
    """The usual case (the EMA beats every epoch's weights): the line lay on the axes' top
    frame, out of sight."""
    import matplotlib.pyplot as plt

    from training import plots

    drawn = []
    monkeypatch.setattr(plots.plt, "close", drawn.append)
    rows = [  # a `tiny` run's two epochs
        {"epoch": 1, "train_loss": 2.3, "test_loss": 2.25, "train_accuracy": 0.128,
         "test_accuracy": 0.2},
        {"epoch": 2, "train_loss": 2.2, "test_loss": 2.16, "train_accuracy": 0.221,
         "test_accuracy": 0.25},
    ]  # fmt: skip
    plots.plot_curves(rows, tmp_path / "curves.png", final_accuracy=0.256)
    [figure] = drawn
    low, high = figure.axes[1].get_ylim()
    assert high - 0.256 >= 0.04 * (high - low), (low, high)
    plt.close(figure)


def test_the_curves_say_how_many_test_images_each_check_scored():
    """Each epoch's check scores a sample of the test split; a run resumed across that change
    has whole-split rows (no count recorded) before the sampled ones."""
    from training.plots import _checked

    def rows(*counts):
        return [
            {"epoch": e} | ({"checked_images": n} if n else {})
            for e, n in enumerate(counts, start=1)
        ]

    assert _checked(rows(None, None), "test") == "test"
    assert _checked(rows(2500, 2500), "test") == "test (2,500 images a check)"
    assert _checked(rows(None, 2500, 2500), "test") == "test (2,500 images a check from epoch 2)"
    assert _checked(rows(5000), "val") == "val (5,000 images a check)"


@pytest.mark.parametrize(
    ("step", "total", "said"),
    [
        (0, 476, "step 0/476 (epoch 1: step 0/48)"),
        (48, 476, "step 48/476 (the end of epoch 1)"),
        (100, 476, "step 100/476 (epoch 3: step 4/48)"),
        (450, 476, "step 450/476 (epoch 10: step 18/44)"),
        # The fast recipe's 9.9 epochs: its tenth has 44 steps, and the 44th ends the run.
        (476, 476, "step 476/476 (the end of epoch 10)"),
        # Whole epochs: the last step ends the last epoch, not one more.
        (96, 96, "step 96/96 (the end of epoch 2)"),
        (95, 96, "step 95/96 (epoch 2: step 47/48)"),
    ],
)
def test_a_position_counts_the_short_last_epoch_as_the_run_does(step, total, said):
    from training.trainer import describe_position

    assert describe_position(step, 48, total) == said


def test_a_train_log_that_cannot_be_written_warns_once_and_the_lines_still_show(tmp_path, capsys):
    """A full disk made every log line a traceback that ended the run; the checkpoint's own
    write is what tells the user to free space. train.log is a folder here, so every append
    fails as it would on a full disk."""
    from training.run_folder import run_logger

    (tmp_path / "train.log").mkdir()
    log = run_logger(tmp_path)
    log("epoch 1")
    log("epoch 2")
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith(f"warning: cannot write {tmp_path / 'train.log'} (Is a directory)")
    assert shown[1:] == ["epoch 1", "epoch 2"]
