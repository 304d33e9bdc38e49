"""Training under SIGKILL: kill a real training run at random steps, resume it, compare.

    python -m bench.training_faults                 # seeds 0 and 1 uninterrupted, seed 0 killed 3x

A small real run (tiny recipe, a CIFAR-10 subset, float32) is trained uninterrupted with
two seeds, to measure the normal run-to-run spread of test accuracy, and once more with
seed 0 while being SIGKILLed at three random moments and resumed with the same command each
time. tests/system/test_training_faults.py uses the same functions with one seed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.checkpoint import CHECKPOINT_NAME
from training.config import SHARED_DATA
from training.run_folder import HISTORY, read_meta

ROOT = Path(__file__).resolve().parents[1]
CIFAR_TAR = SHARED_DATA


@dataclass(frozen=True)
class TrainSpec:
    """The run every comparison uses: small enough for a test, large enough to learn."""

    data: Path = CIFAR_TAR
    epochs: int = 3
    batch_size: int = 128
    train_subset: int = 2048
    test_subset: int = 1000

    def command(self, run_dir: Path, seed: int) -> list[str]:
        return [
            sys.executable, "-m", "training.train", "--data", str(self.data),
            "--run-dir", str(run_dir), "--recipe", "tiny", "--epochs", str(self.epochs),
            "--batch-size", str(self.batch_size), "--train-subset", str(self.train_subset),
            "--test-subset", str(self.test_subset), "--precision", "float32",
            "--seed", str(seed), "--checkpoint-every", "0.2",
        ]  # fmt: skip


@dataclass
class KilledRun:
    """What happened to a run that was killed and resumed."""

    killed_after: list[int] = field(default_factory=list)  # checkpointed step at each kill
    resumed_at: list[int] = field(default_factory=list)  # steps each restart resumed from
    invocations: int = 0


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def train(spec: TrainSpec, run_dir: Path, seed: int) -> dict:
    """One uninterrupted run; returns its meta.json."""
    done = subprocess.run(spec.command(run_dir, seed), cwd=ROOT, env=_env(), text=True,
                          capture_output=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"training failed ({done.returncode}):\n{done.stdout[-3000:]}"
                           f"\n{done.stderr[-3000:]}")  # fmt: skip
    return finished(run_dir)


def finished(run_dir: Path) -> dict:
    meta = read_meta(run_dir)
    meta["history"] = json.loads((run_dir / HISTORY).read_text())
    return meta


def train_with_kills(
    spec: TrainSpec, run_dir: Path, seed: int, kills: int, rng: random.Random
) -> tuple[dict, KilledRun]:
    """SIGKILL the run at `kills` random moments, re-running the same command after each,
    and let the last invocation finish. A moment is drawn as a random step of the whole run
    plus a random part of the 0.2 s checkpoint interval, so it falls anywhere: inside a step,
    a checkpoint write or an epoch-end evaluation."""
    total = spec.epochs * -(-spec.train_subset // spec.batch_size)
    report = KilledRun()
    for target in [*sorted(rng.sample(range(1, total - 2), kills)), None]:
        report.invocations += 1
        delay = rng.uniform(0.0, 0.2)
        killed = _run(spec.command(run_dir, seed), run_dir, target, delay, report)
        if target is not None and not killed:
            raise RuntimeError(f"the run finished before step {target}; nothing was killed")
    return finished(run_dir), report


def checkpoint_step(run_dir: Path) -> int:
    """The step of the last checkpoint written (-1 when there is none yet)."""
    try:
        with np.load(run_dir / CHECKPOINT_NAME) as saved:
            return int(json.loads(str(saved["state"]))["step"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return -1


def _run(command: list[str], run_dir: Path, target: int | None, delay_s: float,
         report: KilledRun) -> bool:  # fmt: skip
    """Run `command`; once its checkpoint reaches step `target`, wait `delay_s` and SIGKILL
    it (None: let it finish). True when it was killed."""
    log = run_dir.parent / f"{run_dir.name}-{report.invocations}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
        while target is not None and process.poll() is None:
            step = checkpoint_step(run_dir)
            if step >= target:
                time.sleep(delay_s)
                process.send_signal(signal.SIGKILL)
                report.killed_after.append(step)
                break
            time.sleep(0.05)
        code = process.wait()
    text = log.read_text()
    report.resumed_at += [
        int(line.split("at step ")[1].split("/")[0])
        for line in text.splitlines()
        if "resumed from checkpoint" in line
    ]
    if code == -signal.SIGKILL:
        return True
    if code != 0:
        raise RuntimeError(f"training exited {code}:\n{text[-3000:]}")
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.training_faults", description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--kill-seed", type=int, default=0, help="random moments come from this")
    a = ap.parse_args(argv)
    spec = TrainSpec()
    with tempfile.TemporaryDirectory(prefix="training-faults-") as tmp:
        plain = {seed: train(spec, Path(tmp) / f"seed{seed}", seed) for seed in a.seeds}
        killed, report = train_with_kills(spec, Path(tmp) / "killed", a.seeds[0], a.kills,
                                          random.Random(a.kill_seed))  # fmt: skip
    print(f"run: tiny recipe, {spec.epochs} epochs, {spec.train_subset} train / "
          f"{spec.test_subset} test images, batch {spec.batch_size}, float32")  # fmt: skip
    print("| run | test accuracy | epochs in history |\n| --- | ---: | ---: |")
    for seed, meta in plain.items():
        print(
            f"| seed {seed}, uninterrupted | {meta['test_accuracy']:.4f} | {len(meta['history'])} |"
        )
    print(
        f"| seed {a.seeds[0]}, SIGKILLed after checkpoints {report.killed_after}, resumed at "
        f"{report.resumed_at} | {killed['test_accuracy']:.4f} | {len(killed['history'])} |"
    )
    accuracies = [m["test_accuracy"] for m in plain.values()]
    print(
        f"seed spread: {max(accuracies) - min(accuracies):.4f}; killed vs same seed: "
        f"{abs(killed['test_accuracy'] - plain[a.seeds[0]]['test_accuracy']):.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
