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
    split = Split(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 4)
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


def test_unknown_recipe_choices_are_refused():
    with pytest.raises(ValueError, match="optimizer"):
        Recipe(optimizer="rmsprop")
    with pytest.raises(ValueError, match="arch"):
        Recipe(arch="resnet")
