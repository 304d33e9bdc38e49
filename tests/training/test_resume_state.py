"""What a checkpoint brings back, checked in-process on a few generated images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from training.config import RECIPES, Recipe
from training.data import Dataset, Split
from training.optim import AirbenchSGD, KerasAdam


def _dataset(n: int = 64) -> Dataset:
    rng = np.random.default_rng(0)
    labels = (np.arange(n) % 4).astype(np.int32)
    split = Split(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), labels)
    return Dataset(split, split, ("a", "b", "c", "d"), "generated")


def test_a_resumed_adam_run_keeps_its_halved_learning_rate(tmp_path):
    """The plateau logic halves Adam's rate after an epoch's row is written, so the row holds
    the rate the epoch ran at; the resumed run must go on at the halved one."""
    from training.trainer import Trainer

    recipe = replace(RECIPES["vgg"], val_split=16, batch_size=16)
    first = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    first.progress.history = [{"epoch": 1, "lr": 5e-4}]
    first.optimizer.learning_rate = 2.5e-4  # what a plateau halving leaves
    first.save_checkpoint()

    resumed = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    assert resumed.optimizer.learning_rate == pytest.approx(5e-4)  # a fresh optimizer's
    assert resumed.resume()
    assert resumed.optimizer.learning_rate == pytest.approx(2.5e-4)


@pytest.mark.parametrize(("optimizer", "kind"), [("sgd", AirbenchSGD), ("adam", KerasAdam)])
def test_the_recipe_names_the_optimizer_whatever_the_arch(tmp_path, optimizer, kind):
    from training.trainer import Trainer

    recipe = replace(RECIPES["tiny"], optimizer=optimizer, batch_size=16)
    trainer = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    assert isinstance(trainer.optimizer, kind)


def test_each_sitting_traces_the_step_once_before_its_timed_steps(tmp_path):
    """The step is traced ahead (not counted as seconds of steps) with the shapes and dtypes
    `_one_step` feeds it: a mismatch would trace again inside the timed steps, unnoticed."""
    from training.trainer import Trainer

    recipe = replace(RECIPES["tiny"], batch_size=32, epochs=1.0)  # 2 steps
    said: list[str] = []
    first = Trainer(recipe, _dataset(), tmp_path, seed=0, log=said.append)
    first.fit()
    assert first._train_step.experimental_get_tracing_count() == 1
    first.save_checkpoint()
    resumed = Trainer(replace(recipe, epochs=2.0), _dataset(), tmp_path, seed=0, log=said.append)
    assert resumed.resume()
    resumed.fit()
    assert resumed.progress.step == 4
    assert resumed._train_step.experimental_get_tracing_count() == 1
    assert sum(line.startswith("training step traced in ") for line in said) == 2


def test_unknown_recipe_choices_are_refused():
    with pytest.raises(ValueError, match="optimizer"):
        Recipe(optimizer="rmsprop")
    with pytest.raises(ValueError, match="arch"):
        Recipe(arch="resnet")


def _arrays(variables) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def test_a_run_shorter_than_the_lookahead_interval_keeps_its_trained_weights(tmp_path):
    """Its EMA was never updated, so taking it would hand back the untrained start (a tiny run
    of 2 steps once exported a model that scored chance)."""
    from training.trainer import Trainer

    recipe = replace(RECIPES["tiny"], batch_size=32, epochs=1.0)  # 64 images: 2 steps
    trainer = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    start = _arrays(trainer.model.weights)
    trainer.fit()
    assert trainer.progress.step == 2 < recipe.lookahead_every
    assert not trainer.ends_on_ema
    moved = [not np.array_equal(a, b) for a, b in zip(start, _arrays(trainer.model.weights))]
    assert sum(moved) > len(moved) // 2


def test_steps_after_the_last_lookahead_update_are_blended_into_the_final_weights(tmp_path):
    """6 steps, lookahead every 5: the final weights are the EMA with step 6 blended in at
    airbench's one-step decay, not the EMA as step 5 left it."""
    from training.trainer import Trainer

    recipe = replace(RECIPES["tiny"], batch_size=32, epochs=3.0)  # 2 steps an epoch, 6 in all
    trainer = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    snapshots = {}
    take = trainer._take_ema_weights

    def spy():
        snapshots["ema"] = _arrays(trainer.ema)
        snapshots["raw"] = _arrays(w for w, _ in trainer.ema_pairs)
        take()

    trainer._take_ema_weights = spy
    trainer.fit()
    assert trainer.progress.step == 6 and trainer.ends_on_ema
    # One step after the last lookahead update, at the last step: rate ** 1 * (6 / 6) ** 3.
    decay = recipe.lookahead_rate
    final = _arrays(w for w, _ in trainer.ema_pairs)
    for ema, raw, got in zip(snapshots["ema"], snapshots["raw"], final):
        np.testing.assert_allclose(got, ema + (1 - decay) * (raw - ema), rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(e, g) for e, g in zip(snapshots["ema"], final))


def test_progress_durations_read_as_a_person_would_say_them():
    from training.trainer import duration

    assert [duration(s) for s in (0.4, 45, 200, 3600 * 2 + 125)] == [
        "0 s",
        "45 s",
        "3 min 20 s",
        "2 h 02 min",
    ]


def test_ctrl_c_during_the_last_epochs_evaluation_stops_with_a_checkpoint(tmp_path):
    """The signal used to be noted and then dropped when no step was left: the run went on
    through its final evaluation as if nothing had been asked. It stops now, and a re-run
    goes straight to the outputs."""
    import signal

    from training.checkpoint import CHECKPOINT_NAME
    from training.trainer import Interrupted, Trainer

    recipe = replace(RECIPES["tiny"], batch_size=16, epochs=1)
    trainer = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    evaluate_epoch = trainer._finish_epoch_if_due

    def evaluated_then_interrupted() -> None:
        evaluate_epoch()
        if trainer.progress.step >= trainer.total_steps:
            trainer._on_signal(signal.SIGINT, None)  # as if Ctrl-C came during it

    trainer._finish_epoch_if_due = evaluated_then_interrupted
    with pytest.raises(Interrupted):
        trainer.fit()
    assert (tmp_path / CHECKPOINT_NAME).exists()
    resumed = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    assert resumed.resume() and resumed.progress.step == resumed.total_steps
    assert resumed.fit().step == resumed.total_steps


def test_a_full_disk_while_checkpointing_leaves_the_previous_checkpoint_and_no_partial_file(
    tmp_path,
):
    """The temp file is pointed at /dev/full, where every write fails with the kernel's own
    ENOSPC, as on a full disk."""
    import os

    from training import checkpoint

    groups = {"weights": [np.arange(4.0)]}
    saved = checkpoint.save(tmp_path, groups, {"step": 1})
    before = saved.read_bytes()
    os.symlink("/dev/full", tmp_path / f".{checkpoint.CHECKPOINT_NAME}.tmp")
    with pytest.raises(checkpoint.CheckpointError) as caught:
        checkpoint.save(tmp_path, {"weights": [np.zeros(1 << 20)]}, {"step": 2})
    assert "No space left on device" in str(caught.value)
    assert "the previous one is intact: free some space and re-run" in str(caught.value)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.CHECKPOINT_NAME]


@pytest.mark.parametrize("damage", ["truncate", "empty", "text"])
def test_a_damaged_checkpoint_is_named_not_a_traceback(tmp_path, damage):
    from training import checkpoint

    path = checkpoint.save(tmp_path, {"weights": [np.arange(1000.0)]}, {"step": 1})
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "empty": b"", "text": b"not a zip"}[damage]
    )
    with pytest.raises(checkpoint.CheckpointError, match=r"is damaged .*move it away"):
        checkpoint.load(tmp_path, {"weights": [np.zeros(1000)]})


def _vgg_trainer(run_dir, log=lambda _: None):
    from training.trainer import Trainer

    recipe = replace(RECIPES["vgg"], val_split=16, batch_size=16)
    return Trainer(recipe, _dataset(), run_dir, seed=0, log=log)


def _masked_output(trainer) -> np.ndarray:
    """A training-mode forward pass: dropout draws its masks (and moves its seeds on)."""
    return trainer.model(np.ones((2, 32, 32, 3), np.float32), training=True).numpy()


def test_a_resumed_vgg_run_draws_the_dropout_masks_an_uninterrupted_one_would(tmp_path):
    """The seed generators' states are not model weights: unsaved, a resumed run drew the
    masks of the run's first steps again."""
    first = _vgg_trainer(tmp_path)
    _masked_output(first)
    first.save_checkpoint()
    expected = _masked_output(first)

    resumed = _vgg_trainer(tmp_path)
    assert resumed.resume()
    np.testing.assert_array_equal(_masked_output(resumed), expected)


def test_a_checkpoint_without_dropout_seeds_resumes_and_says_the_masks_differ(tmp_path):
    """Checkpoints written before the seeds were saved still resume."""
    from training import checkpoint

    first = _vgg_trainer(tmp_path)
    groups = {k: v for k, v in first._state_groups().items() if k != "rng"}
    checkpoint.save(tmp_path, groups, first.progress.__dict__)

    lines = []
    assert _vgg_trainer(tmp_path, lines.append).resume()
    assert any("predates saved dropout seeds" in line for line in lines), lines


def test_a_recipe_that_holds_out_every_training_image_says_so():
    from training.data import DataError
    from training.trainer import split_validation

    with pytest.raises(DataError, match=r"holds out 64 training images .* 64 are loaded"):
        split_validation(_dataset(64), 64, seed=0)


def test_a_checkpoint_of_another_network_is_not_called_damaged(tmp_path):
    """Same tensor count, other shapes (another width): moving the file away would lose a
    good checkpoint; the run folder is the mistake."""
    from training import checkpoint

    checkpoint.save(tmp_path, {"weights": [np.zeros((3, 3))]}, {"step": 1})
    with pytest.raises(checkpoint.CheckpointError, match="written by another network"):
        checkpoint.load(tmp_path, {"weights": [np.zeros((3, 4))]})


def _one_sgd_step(recipe: Recipe, batch: int, mean_grad: np.ndarray) -> np.ndarray:
    """The change one AirbenchSGD step makes to a [4, 2] weight whose summed-loss gradient
    over `batch` images is `batch` x `mean_grad` (what the trainer's reduce_sum gives)."""
    import tensorflow as tf

    weight = tf.Variable(tf.ones([4, 2]))
    optimizer = AirbenchSGD([weight], recipe, whiten_bias=None, batch_size=batch)
    optimizer.apply([tf.constant(batch * mean_grad)], tf.constant(1.0), tf.constant(1.0))
    return 1.0 - weight.numpy()


def test_a_small_data_set_steps_as_far_as_the_recipe_batch(tmp_path):
    """With fewer training images than the recipe's batch (a student's subset), the trainer
    runs smaller batches; the learning rate was still divided by the recipe's 1024, so each
    step moved the weights 512/1024 as far. The step must not depend on the batch size."""
    from training.trainer import Trainer

    recipe = replace(RECIPES["tiny"], optimizer="sgd", muon_lr=0.0)
    mean_grad = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    small, full = (_one_sgd_step(recipe, b, mean_grad) for b in (16, recipe.batch_size))
    np.testing.assert_allclose(small, full, rtol=1e-5)
    trainer = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    assert trainer.batch_size == 64 < recipe.batch_size  # the whole small training split
    assert trainer.optimizer.base_lr == pytest.approx(
        AirbenchSGD([], recipe, None, batch_size=64).base_lr
    )


def test_the_speed_shown_leaves_out_the_first_step_which_traces(tmp_path, monkeypatch):
    """The first step of a sitting also traces the step function (seconds); counted in, the
    progress lines' img/s and time left were far off, and a first step over the 5 s between
    lines printed its own rate at once. Played on a clock where the first step takes 6 s and
    the others 10 ms: every rate shown is the 10 ms steps'."""
    import training.trainer as trainer_module
    from training.trainer import Trainer

    recipe = replace(RECIPES["tiny"], batch_size=8, epochs=1.0)  # 64 images: 8 steps
    trainer = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    clock = [1000.0]
    calls = []

    def step(perm, index):
        clock[0] += 6.0 if not calls else 0.01
        calls.append(index)
        trainer.progress.step += 1
        return 0.0, 0.0

    shown = []
    monkeypatch.setattr(trainer_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(trainer, "_one_step", step)
    monkeypatch.setattr(trainer, "_print_inline", lambda *args: shown.append(args[3]))
    trainer._last_save = clock[0]  # fit() sets it before the first epoch
    trainer._run_epoch(checkpoint_every_s=1e9)
    assert len(calls) == 8 and shown
    assert min(shown) == pytest.approx(8 / 0.01)  # 8 images a 10 ms step, never 8 over 6 s


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_validation_plateau_lowers_adams_rate_and_leaves_sgds_schedule(tmp_path, optimizer):
    """ReduceLROnPlateau: after `plateau_patience` epochs without a better validation loss,
    Adam's rate is multiplied by `plateau_factor` (and said so); SGD's triangle is fixed."""
    from training.trainer import Trainer

    recipe = replace(
        RECIPES["vgg"], optimizer=optimizer, val_split=16, batch_size=16,
        plateau_patience=2, early_stop_patience=10,
    )  # fmt: skip
    said: list[str] = []
    trainer = Trainer(recipe, _dataset(), tmp_path, seed=0, log=said.append)
    before = trainer._current_lr()
    for loss in (1.0, 1.0, 1.0):  # one improvement (from inf), then two epochs without
        trainer._plateau_logic({"val_loss": loss, "val_accuracy": 0.5})
    if optimizer == "adam":
        assert trainer._current_lr() == pytest.approx(before * recipe.plateau_factor)
        assert said == [f"  val loss plateaued: learning rate -> {trainer._current_lr():.2e}"]
    else:
        assert trainer._current_lr() == before and said == []


def test_the_whitening_filters_see_every_class_of_a_class_sorted_data_set(tmp_path):
    """The data sets here are stored class by class; the first 5,000 training images (what
    airbench takes from CIFAR's shuffled order) were all airplanes. Four classes of 16
    images, each class one flat grey, and a sample of 16: every class must be in it."""
    from training.trainer import Trainer

    labels = np.repeat(np.arange(4), 16).astype(np.int32)
    images = np.broadcast_to((labels * 60)[:, None, None, None], (64, 32, 32, 3)).astype(np.uint8)
    split = Split(np.ascontiguousarray(images), labels)
    data = Dataset(split, split, ("a", "b", "c", "d"), "generated, sorted by class")
    recipe = replace(RECIPES["tiny"], whiten_images=16, batch_size=16)
    trainer = Trainer(recipe, data, tmp_path, seed=0, log=lambda _: None)
    sample = trainer._whitening_sample()
    assert len(sample) == 16
    assert set(np.unique(sample[:, 0, 0, 0])) == {0, 60, 120, 180}


def test_a_stop_after_the_last_steps_check_is_acted_on_when_fit_returns(tmp_path):
    """A Ctrl-C while the final weights are taken (after the last check for a stop) said
    "stopping: a checkpoint is saved..." and was then dropped: the run wrote its outputs
    and exited 0. It goes on to the handler around fit, which for training is Ctrl-C's."""
    import signal

    from training.trainer import Trainer

    recipe = replace(RECIPES["tiny"], batch_size=16, epochs=1)
    trainer = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    take_ema_weights = trainer._take_ema_weights

    def interrupted_while_taking_them() -> None:
        trainer._on_signal(signal.SIGINT, None)
        take_ema_weights()

    trainer._take_ema_weights = interrupted_while_taking_them
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_full_disk_while_saving_the_best_weights_keeps_the_previous_ones(tmp_path):
    """best.weights.h5 was written in place, and a full disk ended the run in a traceback.
    The partial file is pointed at /dev/full, whose writes fail with ENOSPC."""
    import os

    from training.checkpoint import CheckpointError
    from training.trainer import Trainer

    recipe = replace(RECIPES["vgg"], val_split=16, batch_size=16)
    trainer = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    trainer._plateau_logic({"val_loss": 1.0, "val_accuracy": 0.5})
    best = tmp_path / "best.weights.h5"
    before = best.read_bytes()
    os.symlink("/dev/full", tmp_path / ".partial.best.weights.h5")
    full = r"best.weights.h5 \(No space left on device\); the previous one is intact: free some"
    with pytest.raises(CheckpointError, match=full):
        trainer._plateau_logic({"val_loss": 0.9, "val_accuracy": 0.6})
    assert best.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.weights.h5"]


def test_each_epoch_checks_a_fixed_sample_of_the_test_and_training_is_the_same(
    tmp_path, monkeypatch
):
    """The per-epoch check scores MONITOR_TEST_IMAGES of the test split (the final evaluation
    scores all of it): the same pick every run, said in train.log and history, and with no
    effect on training: a run checking 16 images ends on the same weights as one checking 64."""
    import training.trainer as trainer_module
    from training.trainer import Trainer

    recipe = replace(RECIPES["tiny"], batch_size=16, epochs=2.0)
    ends, lines = {}, {}
    for checked in (16, 64):
        monkeypatch.setattr(trainer_module, "MONITOR_TEST_IMAGES", checked)
        log = []
        (tmp_path / str(checked)).mkdir()
        trainer = Trainer(recipe, _dataset(), tmp_path / str(checked), seed=0, log=log.append)
        assert len(trainer.monitor.labels) == checked
        trainer.fit()
        ends[checked] = _arrays(trainer.model.weights)
        lines[checked] = [line for line in log if line.startswith("epoch ")]
        assert [row["checked_images"] for row in trainer.progress.history] == [checked] * 2
    assert all(np.array_equal(a, b) for a, b in zip(ends[16], ends[64], strict=True))
    assert all("(16 of 64 images)" in line for line in lines[16]), lines[16]
    assert not any(" of 64 images)" in line for line in lines[64]), lines[64]
    # The same pick whatever the run's seed: checks of two runs compare like with like. A
    # sample smaller than the split (at 64, the whole split: any pick would be equal).
    monkeypatch.setattr(trainer_module, "MONITOR_TEST_IMAGES", 16)
    picks = [
        Trainer(
            recipe, _dataset(), tmp_path / f"seed{seed}", seed=seed, log=lambda _: None
        ).monitor.images
        for seed in (0, 1)
    ]
    assert np.array_equal(*picks)
    assert len(np.unique(picks[0].reshape(16, -1), axis=0)) == 16  # 16 different images


def test_a_validation_split_is_checked_whole(tmp_path, monkeypatch):
    import training.trainer as trainer_module
    from training.trainer import Trainer

    monkeypatch.setattr(trainer_module, "MONITOR_TEST_IMAGES", 4)
    recipe = replace(RECIPES["vgg"], val_split=16, batch_size=16)
    trainer = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    assert trainer.monitor_name == "val" and len(trainer.monitor.labels) == 16


def test_historys_lr_is_the_rate_of_the_epochs_last_step(tmp_path):
    """history.json's `lr` was the rate of the step after the epoch (the next one's first):
    here it is compared with the schedule each step was really given."""
    from training.trainer import Trainer

    recipe = replace(RECIPES["tiny"], batch_size=16, epochs=2.0)
    trainer = Trainer(recipe, _dataset(), tmp_path, seed=0, log=lambda _: None)
    given = []
    step_inputs = trainer._step_inputs

    def recording(idx):
        inputs = step_inputs(idx)
        given.append(float(inputs[4]))  # the schedule's value for this step
        return inputs

    trainer._step_inputs = recording
    trainer.fit()
    for row in trainer.progress.history:
        # `given[0]` is the step's tracing, ahead of the steps (Trainer._trace_step).
        expected = trainer.optimizer.learning_rate_at(given[row["step"]])
        assert row["lr"] == pytest.approx(expected, rel=1e-6), row  # given in float32
    assert len(given) == trainer.total_steps + 1
