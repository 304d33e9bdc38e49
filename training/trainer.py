"""The training loop: resumable at any step, with progress output and per-epoch history.

One `tf.function` step does augmentation, forward, loss and the optimizer update. The data
order of epoch e is a permutation seeded by (seed, e) and augmentation is seeded by
(seed, step), so resuming from step k replays exactly what an uninterrupted run would do.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from runtime.interrupts import STOP_SIGNALS
from training import checkpoint
from training.augment import augment, flip_mask
from training.config import MONITOR_SEED, MONITOR_TEST_IMAGES, Recipe
from training.data import DataError, Dataset, Split
from training.inference import make_logits_fn, predict_logits, top1_accuracy
from training.models import FROZEN_KERNELS, build_model, init_whitening
from training.optim import AirbenchSGD, KerasAdam, lookahead_decay, triangle_lr
from training.run_folder import BEST_WEIGHTS, show


def duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min': what a person reads in a progress line."""
    s = round(max(seconds, 0))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _leave_closed_terminal() -> None:
    """After a hang-up, writing to the terminal fails (EIO), and Python would even exit with
    code 120 for output it could not flush: point the terminal's file descriptors at /dev/null
    (ones redirected to a file keep their file)."""
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        if os.isatty(fd):
            os.dup2(null, fd)
    os.close(null)


class Interrupted(Exception):
    """A stop signal arrived; the checkpoint has been written."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


@dataclass
class Progress:
    """The JSON part of a checkpoint."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    images_seen: int = 0
    epoch_loss_sum: float = 0.0  # running sums of the epoch in progress
    epoch_correct: float = 0.0
    epoch_seen: float = 0.0
    best_val_accuracy: float = -1.0
    plateau_wait: int = 0
    early_stop_wait: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    resumed_from: list[int] = field(default_factory=list)


def split_validation(ds: Dataset, n: int, seed: int) -> tuple[Split, Split | None]:
    if n <= 0:
        return ds.train, None
    if n >= len(ds.train.labels):
        raise DataError(
            f"the recipe holds out {n} training images for validation, and {len(ds.train.labels)}"
            f" are loaded, which leaves none to train on: train on more than {n} images"
        )
    perm = np.random.default_rng([seed, 99]).permutation(len(ds.train.labels))
    val, train = perm[:n], perm[n:]
    return (
        Split(ds.train.images[train], ds.train.labels[train]),
        Split(ds.train.images[val], ds.train.labels[val]),
    )


def epoch_end(epoch: int, steps_per_epoch: int, total_steps: int) -> int:
    """The step that ends `epoch` (counted from 0): a fractional epoch count (the fast recipe's
    9.9) makes the last epoch short."""
    return min((epoch + 1) * steps_per_epoch, total_steps)


def describe_position(step: int, steps_per_epoch: int, total_steps: int) -> str:
    """A step in the progress lines' epoch terms. The short last epoch ends after 44 steps of
    48, and "step 44/48" read as a run stopped mid-epoch."""
    epoch, done = divmod(step, steps_per_epoch)
    if step and (done == 0 or step == total_steps):
        within = f"the end of epoch {math.ceil(step / steps_per_epoch)}"
    else:
        size = epoch_end(epoch, steps_per_epoch, total_steps) - epoch * steps_per_epoch
        within = f"epoch {epoch + 1}: step {done}/{size}"
    return f"step {step}/{total_steps} ({within})"


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        ds: Dataset,
        run_dir: Path,
        seed: int,
        log: Callable[[str], None] = print,
        filter_grad: str = "kernel",
    ):
        """`filter_grad`: "matmuls" trains the wide convs with training.layers.Conv2D's
        nine-matmul filter gradient (training.hardware.choose_filter_grad)."""
        self.recipe, self.ds, self.run_dir, self.seed, self.log = recipe, ds, run_dir, seed, log
        self.train, self.val = split_validation(ds, recipe.val_split, seed)
        # What each epoch's check scores (MONITOR_TEST_IMAGES says why a sample of the test).
        self.monitor, self.monitor_name = (
            (self.val, "val")
            if self.val is not None
            else (ds.test.sample(MONITOR_TEST_IMAGES, MONITOR_SEED), "test")
        )
        n = len(self.train.labels)
        self.batch_size = min(recipe.batch_size, n)
        self.steps_per_epoch = n // self.batch_size
        self.total_steps = max(1, math.ceil(recipe.epochs * self.steps_per_epoch))
        self.mean = self.train.images.reshape(-1, 3).mean(0).astype(float).tolist()
        self.std = self.train.images.reshape(-1, 3).std(0).astype(float).tolist()
        keras.utils.set_random_seed(seed)
        self.model = build_model(
            recipe.arch,
            len(ds.class_names),
            self.mean,
            self.std,
            ds.image_size,
            recipe.widths,
            recipe.depth,
            matmul_filter_grad=filter_grad == "matmuls",
        )
        self._setup_optimizer(self._init_whitening())
        # Lookahead-EMA covers every float weight, BN statistics included (airbench).
        self.ema_pairs = (
            [
                (w, tf.Variable(np.asarray(w.numpy(), np.float32), trainable=False))
                for w in self.model.weights
                if "float" in str(w.dtype)
            ]
            if recipe.lookahead_every
            else []
        )
        self.ema = [e for _, e in self.ema_pairs]
        self.progress = Progress()
        self._stop_signal: int | None = None
        self._train_step = self._make_train_step()
        self._monitor_logits = make_logits_fn(self.model)  # traced once, used every epoch

    # ------------------------------------------------------------ setup

    def _init_whitening(self) -> tf.Variable | None:
        """The `fast` net's first conv, fitted before any step to whiten 2x2 patches of a
        sample of training images (airbench), then frozen; its bias, which trains, is returned
        (None for a net without one)."""
        if self.recipe.arch != "fast":
            return None
        init_whitening(self.model, self._whitening_sample(), self.recipe.whiten_eps)
        return self.model.get_layer("whiten").bias

    def _setup_optimizer(self, whiten_bias: tf.Variable | None) -> None:
        """`recipe.optimizer` picks the update and, in `_make_train_step`, the loss reduction
        that goes with it (airbench's SGD steps on the summed loss, Adam on the mean)."""
        frozen = [self.model.get_layer(n).kernel for n in FROZEN_KERNELS.get(self.recipe.arch, ())]
        self.trainable = [
            v for v in self.model.trainable_variables if not any(v is f for f in frozen)
        ]
        if self.recipe.optimizer == "sgd":
            self.optimizer = AirbenchSGD(
                self.trainable, self.recipe, whiten_bias, batch_size=self.batch_size
            )
        else:
            self.optimizer = KerasAdam(self.trainable, self.recipe)

    def _whitening_sample(self) -> np.ndarray:
        """A seeded random sample of the training images: the data sets here are stored class
        by class, so the first 5,000 (what airbench takes from CIFAR's shuffled order) were
        all airplanes, and the whitening filters fitted airplane patches only."""
        n = len(self.train.labels)
        rng = np.random.default_rng([self.seed, 7919])  # a stream no other draw uses
        chosen = np.sort(rng.choice(n, size=min(n, self.recipe.whiten_images), replace=False))
        return self.train.images[chosen]

    def _state_groups(self) -> dict:
        return {
            "model": self.model.weights,
            "opt": self.optimizer.variables,
            "ema": self.ema,
            "rng": self._rng_states(),
        }

    def _rng_states(self) -> list:
        """The seed generators' states (dropout's masks, in `vgg`): not among the model's
        weights, yet a resumed run must draw the masks that the uninterrupted one would."""
        weights = {id(w) for w in self.model.weights}
        return [v for v in self.model.variables if id(v) not in weights]

    def _make_train_step(self):
        recipe, model, optimizer, trainable = (
            self.recipe,
            self.model,
            self.optimizer,
            self.trainable,
        )
        reduce = tf.reduce_sum if recipe.optimizer == "sgd" else tf.reduce_mean
        num_classes = len(self.ds.class_names)

        @tf.function(reduce_retracing=True)
        def step_fn(images, labels, flip, seed, schedule, whiten_bias_on):
            x = augment(images, flip, seed, recipe.translate, recipe.cutout)
            with tf.GradientTape() as tape:
                logits = model(tf.cast(x, tf.float32), training=True)
                onehot = tf.one_hot(labels, num_classes)
                ce = keras.losses.categorical_crossentropy(
                    onehot, logits, from_logits=True, label_smoothing=recipe.label_smoothing
                )
                loss = reduce(ce) + tf.add_n(
                    [tf.constant(0.0)] + [tf.cast(r, tf.float32) for r in model.losses]
                )
            grads = tape.gradient(loss, trainable)
            optimizer.apply(grads, schedule, whiten_bias_on)
            correct = tf.reduce_sum(
                tf.cast(tf.argmax(logits, 1, output_type=tf.int32) == labels, tf.float32)
            )
            return tf.reduce_sum(ce), correct

        return step_fn

    @tf.function
    def _lookahead(self, decay):
        for w, e in self.ema_pairs:
            e.assign(e + (1 - decay) * (tf.cast(w, e.dtype) - e))
            w.assign(tf.cast(e, w.dtype))

    # ------------------------------------------------------------ run

    def resume(self) -> bool:
        loaded = checkpoint.load(self.run_dir, self._state_groups(), optional=("rng",))
        if loaded is None:
            return False
        state, missing = loaded
        if missing:
            self.log("  this checkpoint predates saved dropout seeds: the resumed epochs draw "
                     "other dropout masks than an uninterrupted run would")  # fmt: skip
        self.progress = Progress(**state)
        self.progress.resumed_from.append(self.progress.step)
        # Adam's learning rate is one of its variables, so the checkpoint restored it, plateau
        # halvings included (history's "lr" is the rate an epoch ran at, before any halving).
        return True

    def save_checkpoint(self) -> None:
        checkpoint.save(self.run_dir, self._state_groups(), self.progress.__dict__)

    def fit(self, checkpoint_every_s: float = 60.0) -> Progress:
        old_handlers = {
            s: signal.signal(s, self._on_signal)
            for s in STOP_SIGNALS
            if signal.getsignal(s) is not signal.SIG_IGN
        }
        try:
            self._fit(checkpoint_every_s)
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
        if self._stop_signal is not None:
            # It came after the last step's check (the EMA's final weights): nothing is left
            # to save, so it goes to the handler of the code around, as if it came now.
            signal.raise_signal(self._stop_signal)
        return self.progress

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGHUP:
            _leave_closed_terminal()
        elif self._stop_signal is None:  # at once: a step or an evaluation can take seconds
            show("\nstopping: a checkpoint is saved when the current step or evaluation ends")
        self._stop_signal = signum

    def _fit(self, checkpoint_every_s: float) -> None:
        p = self.progress
        if p.step < self.total_steps and not p.stopped_early:
            self.log(f"training step traced in {self._trace_step():.1f} s (not counted as steps)")
        self._last_save = time.monotonic()
        while True:
            self._finish_epoch_if_due()  # also after a kill between last step and report
            if self._stop_signal is not None:  # it came during the epoch's evaluation
                self.save_checkpoint()
                raise Interrupted(self._stop_signal)
            if p.step >= self.total_steps or p.stopped_early:
                break
            self._run_epoch(checkpoint_every_s)
        self._take_ema_weights()

    @property
    def _monitor_note(self) -> str:
        """Says so when the epoch's check scored a sample of the test images, not all."""
        checked, whole = len(self.monitor.labels), len(self.ds.test.labels)
        return f" ({checked:,} of {whole:,} images)" if self.val is None and checked < whole else ""

    @property
    def _loss_note(self) -> str:
        """The training loss is label-smoothed where the recipe says so; the test loss is not."""
        return f" (smoothed {self.recipe.label_smoothing:g})" if self.recipe.label_smoothing else ""

    @property
    def ends_on_ema(self) -> bool:
        """Whether the final weights are the lookahead EMA. Not for a run too short to have
        updated it even once: its EMA still holds the untrained start."""
        return bool(self.ema) and self.progress.step >= self.recipe.lookahead_every

    @property
    def steps_after_last_ema_update(self) -> int:
        """Steps the lookahead EMA has not seen yet; the end of the run blends them in."""
        every = self.recipe.lookahead_every
        return self.progress.step % every if every else 0

    def _take_ema_weights(self) -> None:
        """Final weights = the lookahead EMA, as airbench; steps since its last update are
        blended in first (airbench drops them)."""
        if not self.ends_on_ema:
            return
        if leftover := self.steps_after_last_ema_update:
            decay = lookahead_decay(
                self.progress.step, self.total_steps, leftover, self.recipe.lookahead_rate
            )
            self._lookahead(tf.constant(decay, tf.float32))
        self._lookahead(tf.constant(1.0))

    @property
    def epochs(self) -> int:
        """Epochs the run's steps make, the short last one counted."""
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def position(self) -> str:
        """Where the run stands, in steps and in the progress lines' epoch terms."""
        return describe_position(self.progress.step, self.steps_per_epoch, self.total_steps)

    def _epochs_done(self) -> int:
        if self.progress.step >= self.total_steps:
            return self.epochs
        return self.progress.step // self.steps_per_epoch

    def _finish_epoch_if_due(self) -> None:
        if len(self.progress.history) < self._epochs_done():
            self._end_epoch(len(self.progress.history))
            self.save_checkpoint()
            self._last_save = time.monotonic()

    def _run_epoch(self, checkpoint_every_s: float) -> None:
        """Steps up to the end of the current epoch; running sums live in `progress`."""
        p, spe = self.progress, self.steps_per_epoch
        epoch = p.step // spe
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.train.labels))
        end = epoch_end(epoch, spe, self.total_steps)
        t0 = mark = last_print = time.monotonic()
        seen_here = 0
        # Speed is timed from the end of each epoch's first step: a sitting's first is also the
        # step's first run (XLA compiling the GELU kernels, oneDNN setting up: seconds), and
        # counted in, it made the first estimates far too long.
        rate_from: tuple[float, int] | None = None
        while p.step < end:
            loss, hits = self._one_step(perm, p.step - epoch * spe)
            p.epoch_loss_sum += loss
            p.epoch_correct += hits
            p.epoch_seen += self.batch_size
            seen_here += self.batch_size
            now = time.monotonic()
            if rate_from is None:
                rate_from = (now, seen_here)
            timed = now - rate_from[0]  # 0 until a step after the first: no rate to tell yet
            if (now - last_print > 5 and timed > 0) or p.step == end:
                done, total = p.step - epoch * spe, end - epoch * spe
                ips = (seen_here - rate_from[1]) / timed if timed > 0 else seen_here / (now - t0)
                left = (self.total_steps - p.step) * self.batch_size / ips
                self._print_inline(epoch, done, total, ips, p.epoch_loss_sum / p.epoch_seen, left)
                last_print = now
            if self._stop_signal is not None or now - self._last_save > checkpoint_every_s:
                p.train_seconds += now - mark
                mark = now
                self.save_checkpoint()
                self._last_save = now
                if self._stop_signal is not None:
                    raise Interrupted(self._stop_signal)
        p.train_seconds += time.monotonic() - mark

    def _trace_step(self) -> float:
        """Traces the step function for the batches `_one_step` feeds it (the same
        `_step_inputs`), before the timed steps: every sitting traces it once, so counted as
        steps, a run resumed twice read slower than the same run uninterrupted. Seconds taken."""
        started = time.monotonic()
        self._train_step.get_concrete_function(*self._step_inputs(np.arange(self.batch_size)))
        return time.monotonic() - started

    def _step_inputs(self, idx: np.ndarray) -> tuple:
        """The step function's arguments for the training images `idx` at the current step."""
        p = self.progress
        epoch_float = p.step / self.steps_per_epoch
        flip = flip_mask(
            idx, int(epoch_float), p.step, self.seed, len(self.train.labels), self.recipe.alt_flip
        )
        return (
            self.train.images[idx],
            self.train.labels[idx],
            flip & self.recipe.flip,
            tf.constant([self.seed, p.step], tf.int32),
            tf.constant(triangle_lr(p.step, self.total_steps, self.recipe), tf.float32),
            tf.constant(1.0 if self._whiten_bias_trains(epoch_float) else 0.0, tf.float32),
        )

    def _one_step(self, perm: np.ndarray, index_in_epoch: int) -> tuple[float, float]:
        p = self.progress
        idx = perm[index_in_epoch * self.batch_size : (index_in_epoch + 1) * self.batch_size]
        loss, hits = self._train_step(*self._step_inputs(idx))
        p.step += 1
        p.images_seen += self.batch_size
        every = self.recipe.lookahead_every
        if every and p.step % every == 0:
            decay = lookahead_decay(p.step, self.total_steps, every, self.recipe.lookahead_rate)
            self._lookahead(tf.constant(decay, tf.float32))
        return float(loss), float(hits)

    def _whiten_bias_trains(self, epoch: float) -> bool:
        limit = self.recipe.whiten_bias_epochs
        return limit is None or epoch < limit

    def _print_inline(
        self, epoch: int, done: int, total: int, ips: float, loss: float, left_s: float
    ) -> None:
        msg = (
            f"  epoch {epoch + 1}: step {done}/{total} · {ips:,.0f} img/s this epoch"
            f" · loss {loss:.3f}"
        )
        if left_s >= 1:  # steps only: the per-epoch checks and the final evaluation add more
            msg += f" · about {duration(left_s)} of steps left"
        if sys.stdout.isatty():  # rewrite the line, erasing the end of a longer one (ESC[K)
            show(f"\r{msg}\x1b[K", end="")
        else:
            show(msg)

    def _end_epoch(self, epoch: int) -> None:
        p = self.progress
        loss_sum, correct, seen = p.epoch_loss_sum, p.epoch_correct, p.epoch_seen
        p.epoch_loss_sum = p.epoch_correct = p.epoch_seen = 0.0
        if sys.stdout.isatty():
            print()
        monitor, name = self.monitor, self.monitor_name
        logits = predict_logits(self.model, monitor.images, logits_fn=self._monitor_logits)
        ce = keras.losses.sparse_categorical_crossentropy(monitor.labels, logits, from_logits=True)
        row = {
            "epoch": epoch + 1,
            "step": p.step,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            f"{name}_loss": float(np.mean(ce)),
            f"{name}_accuracy": top1_accuracy(logits.argmax(1), monitor.labels),
            "checked_images": len(monitor.labels),
            "lr": self._current_lr(),
            "train_seconds": p.train_seconds,
            "images_seen": p.images_seen,
        }
        p.history.append(row)
        self.log(
            f"epoch {epoch + 1}/{self.epochs} · "
            f"train loss{self._loss_note} {row['train_loss']:.3f} "
            f"acc {row['train_accuracy']:.2%} · "
            f"{name} loss {row[f'{name}_loss']:.3f} acc {row[f'{name}_accuracy']:.2%}"
            f"{self._monitor_note} · "
            # The whole run's, not this epoch's: the step line above times this epoch alone
            # (from its second step), so the two rates differ.
            f"run so far: {duration(p.train_seconds)} of steps, "
            f"{p.images_seen / max(p.train_seconds, 1e-9):,.0f} img/s"
        )
        if self.val is not None:
            self._plateau_logic(row)

    def _current_lr(self) -> float:
        """history.json's `lr`: the step size of the epoch's last step. For the SGD recipes,
        the recipe's `lr` / (batch size x (1 + 1 / (1 - momentum))), airbench's scaling, times
        the schedule: the rate of the head's weights (x bias_lr_scale for biases); `fast`'s
        conv filters take Muon steps of muon_lr x the same schedule."""
        last_step = max(self.progress.step - 1, 0)  # `step` counts the steps done
        schedule = triangle_lr(last_step, self.total_steps, self.recipe)
        return self.optimizer.learning_rate_at(schedule)

    def _save_best_weights(self) -> None:
        """Written beside the old file and renamed over it, as the checkpoint is."""
        checkpoint.write_beside(
            self.run_dir / BEST_WEIGHTS,
            self.run_dir / f".partial.{BEST_WEIGHTS}",  # Keras wants the .weights.h5 ending
            self.model.save_weights,
            "the best weights",
        )

    def _plateau_logic(self, row: dict) -> None:
        """ReduceLROnPlateau and EarlyStopping on the validation split. The best validation
        weights are saved (best.weights.h5) but the run reports and exports its final ones,
        as Keras's EarlyStopping does by default."""
        p, r = self.progress, self.recipe
        if row["val_accuracy"] > p.best_val_accuracy:
            p.best_val_accuracy = row["val_accuracy"]
            self._save_best_weights()
        if row["val_loss"] < p.best_val_loss - r.plateau_min_delta:
            p.best_val_loss, p.plateau_wait, p.early_stop_wait = row["val_loss"], 0, 0
            return
        p.plateau_wait += 1
        p.early_stop_wait += 1
        if p.plateau_wait >= r.plateau_patience:
            lowered = self.optimizer.reduce_on_plateau(r.plateau_factor, r.min_lr)
            if lowered is not None:
                p.plateau_wait = 0
                self.log(f"  val loss plateaued: learning rate -> {lowered:.2e}")
        if p.early_stop_wait >= r.early_stop_patience:
            p.stopped_early = True
            self.log(f"  early stop: no val-loss improvement in {r.early_stop_patience} epochs")
