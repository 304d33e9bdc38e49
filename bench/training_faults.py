"""Training under SIGKILL: kill a real training run at random steps, resume it, compare.

    python -m bench.training_faults                 # seeds 0 and 1 uninterrupted, seed 0 killed 3x

A small real run (tiny recipe, a CIFAR-10 subset, float32) is trained uninterrupted with
two seeds, to measure the normal run-to-run spread of test accuracy, and once more with
seed 0 while being SIGKILLed at three random steps and resumed with the same command each
time. tests/system/test_training_faults.py uses the same functions with one seed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR_TAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
STEP_LINE = re.compile(r"epoch (\d+): step (\d+)/(\d+)")


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

    killed_at: list[int] = field(default_factory=list)  # global steps seen before each kill
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
    meta = json.loads((run_dir / "meta.json").read_text())
    meta["history"] = json.loads((run_dir / "history.json").read_text())
    return meta


def train_with_kills(
    spec: TrainSpec, run_dir: Path, seed: int, kills: int, rng: random.Random
) -> tuple[dict, KilledRun]:
    """SIGKILL the run once it passes each of `kills` random steps, re-run the same command
    after each kill, and let the last invocation finish."""
    total = spec.epochs * -(-spec.train_subset // spec.batch_size)
    targets = sorted(rng.sample(range(2, total - 1), kills))
    report = KilledRun()
    for target in [*targets, None]:
        report.invocations += 1
        step = _run_until(spec.command(run_dir, seed), target, report)
        if target is not None:
            if step is None:
                raise RuntimeError(f"the run finished before step {target}; nothing was killed")
            report.killed_at.append(step)
    return finished(run_dir), report


def _run_until(command: list[str], target: int | None, report: KilledRun) -> int | None:
    """Run `command`; kill it with SIGKILL at global step >= target (None: to the end).
    Returns the step at which it was killed, or None when it ran to completion."""
    process = subprocess.Popen(command, cwd=ROOT, env=_env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    output = []
    for line in process.stdout:
        output.append(line)
        if "resumed from checkpoint at step" in line:
            report.resumed_at.append(int(line.split("at step ")[1].split("/")[0]))
        match = STEP_LINE.search(line)
        if target is not None and match:
            epoch, done, per_epoch = map(int, match.groups())
            step = (epoch - 1) * per_epoch + done
            if step >= target:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return step
    if process.wait() != 0:
        raise RuntimeError(f"training exited {process.returncode}:\n{''.join(output)[-3000:]}")
    return None


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
        f"| seed {a.seeds[0]}, SIGKILLed at steps {report.killed_at}, resumed at "
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
