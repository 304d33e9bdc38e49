"""A real training run SIGKILLed at three random steps and resumed each time ends like an
uninterrupted run of the same seed (bench/training_faults.py holds the mechanics and the
two-seed spread measurement; docs/RELIABILITY.md has its figures).

Tolerance: the trainer replays the same data order and augmentation seeds after a resume,
so the only difference left is floating-point order inside multi-threaded kernels and the
0.2 s of steps a kill can lose and redo (the same steps again). Every epoch's losses must
match to 0.1 % (as tests/training/test_train.py holds a SIGTERM resume to), and the final
accuracy to 0.02 (20 of 1,000 test images), well inside the two-seed spread measured by the
bench command (several points): a resume that restarts the schedule, skips data or reloads
stale weights fails both.
"""

from __future__ import annotations

import random

import pytest

from bench.training_faults import CIFAR_TAR, TrainSpec, train, train_with_kills

pytestmark = pytest.mark.slow  # several real training runs

TOLERANCE = 0.02
KILL_SEED = 8  # draws the three kill moments; any seed should pass


@pytest.mark.skipif(not CIFAR_TAR.exists(), reason=f"{CIFAR_TAR} is absent")
def test_three_sigkills_and_resumes_finish_like_an_uninterrupted_run(tmp_path) -> None:
    spec = TrainSpec()
    plain = train(spec, tmp_path / "plain", seed=0)
    rng = random.Random(KILL_SEED)
    killed, report = train_with_kills(spec, tmp_path / "killed", 0, 3, rng)
    assert report.invocations == 4 and len(report.killed_after) == 3
    # Each restart resumed from a checkpoint at least as new as the kill before it left, not
    # from scratch or an older one, and never went backwards. (A kill can land while a restart
    # is still starting up, before it says where it resumes: then fewer resumes are printed.
    # The last invocation, never killed, always resumes.)
    assert 1 <= len(report.resumed_at) <= 3, report
    assert all(r >= report.killed_after[0] > 0 for r in report.resumed_at), report
    assert report.resumed_at[-1] >= report.killed_after[-1], report
    assert report.resumed_at == sorted(report.resumed_at), report
    assert [row["epoch"] for row in killed["history"]] == list(range(1, spec.epochs + 1))
    assert killed["resumed_at_steps"], "the finished run does not record its resumes"
    assert abs(killed["test_accuracy"] - plain["test_accuracy"]) <= TOLERANCE, (
        killed["test_accuracy"],
        plain["test_accuracy"],
        report,
    )
    assert killed["test_accuracy"] > 0.2  # it learned: 10 classes, 0.1 is chance
    # The same steps on the same data: every epoch's losses, not only the last accuracy.
    for key in ("train_loss", "test_loss"):
        assert [row[key] for row in killed["history"]] == pytest.approx(
            [row[key] for row in plain["history"]], rel=1e-3
        ), key
