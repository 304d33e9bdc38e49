"""Model definitions: `fast` (airbench-style) and `vgg` (the project's original reference).

Every model takes float32 pixels in 0..255 ``[N, 32, 32, 3]`` and returns float32 logits
``[N, C]``. Normalisation is inside the model, so no client can forget it: the first layer of a
trained model, and folded into the whitening conv of the form `fold_for_serving` exports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from training.config import ARCHITECTURES
from training.run_folder import FINAL_WEIGHTS, RUN_OPTIONS, is_finished, read_meta

# Conv layers whose filters are set from the data (init_whitening) and never trained, as in
# airbench: the trainer leaves them out of the optimizer, bench.conv_passes out of its timings.
FROZEN_KERNELS: dict[str, tuple[str, ...]] = {"fast": ("whiten",)}
# The `fast` net's head divides its logits by 9 (airbench). Not a weight, so meta.json records
# it (network_constants) and inference rebuilds a run with the scale it was trained with: a
# changed default must not change an old run's served probabilities. Runs from before it was
# recorded were all trained with 1/9.
LOGIT_SCALE = 1 / 9


def build_model(
    arch: str,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int = 32,
    widths: Sequence[int] = (64, 256, 256),
    depth: int = 2,
    logit_scale: float = LOGIT_SCALE,
) -> keras.Model:
    if arch == "fast":
        return build_fast(
            num_classes, mean, std, image_size, widths, depth, logit_scale=logit_scale
        )
    if arch == "vgg":
        return build_vgg(num_classes, mean, std, image_size)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")


def _normalize(x, mean: Sequence[float], std: Sequence[float], dtype: str | None = None):
    variance = np.square(np.asarray(std, np.float32))
    return layers.Normalization(
        mean=list(mean), variance=list(variance), name="normalize", dtype=dtype
    )(x)


# ---------------------------------------------------------------- fast (airbench94 shape)


@keras.saving.register_keras_serializable(package="cifar10")
class BatchNormalization(layers.BatchNormalization):
    """Keras's BatchNormalization, trained with TensorFlow's fused kernel (oneDNN on CPU).

    Named as Keras's layer on purpose: `.weights.h5` files key each layer by its class name, so
    weights and checkpoints saved with the plain Keras layer (every run before this class) load
    into it, and the other way round.

    Keras 3 casts the whole activation to float32 and normalises it in about ten elementwise
    passes; the fused kernel reads bfloat16 directly and keeps its statistics in float32. Forward
    + backward on a bfloat16 [1024, 16, 16, 256] activation: 37 ms against 340 ms here, about 9 %
    of a training step (docs/BENCHMARKS.md). Same weights and moving-statistics update (biased
    variance, as Keras), so checkpoints, inference and `fold_for_serving` are unchanged.
    Channels-last only, as every model here.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones([channels])
        offset = self.beta if self.center else tf.zeros([channels])
        y, mean, unbiased, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=tf.cast(scale, tf.float32),
            offset=tf.cast(offset, tf.float32),
            mean=tf.zeros([0]),
            variance=tf.zeros([0]),
            epsilon=self.epsilon,
            exponential_avg_factor=1.0,
            data_format="NHWC",
            is_training=True,
        )
        count = tf.cast(tf.size(inputs) // channels, tf.float32)
        variance = unbiased * (count - 1) / count  # the kernel reports n / (n - 1) x the biased one
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1 - momentum))
        return tf.cast(y, self.compute_dtype)


# Exact GELU, x * Phi(x), and its derivative Phi(x) + x * phi(x), each one XLA kernel that
# reads x (and dy) once in its own dtype and does the arithmetic in float32.
_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


@tf.function(jit_compile=True)
def _gelu_xla(x):
    xf = tf.cast(x, tf.float32)
    return tf.cast(0.5 * xf * (1.0 + tf.math.erf(xf * _SQRT_HALF)), x.dtype)


@tf.function(jit_compile=True)
def _gelu_grad_xla(x, dy):
    xf = tf.cast(x, tf.float32)
    cdf = 0.5 * (1.0 + tf.math.erf(xf * _SQRT_HALF))
    pdf = _INV_SQRT_2PI * tf.exp(-0.5 * xf * xf)
    return tf.cast(tf.cast(dy, tf.float32) * (cdf + xf * pdf), x.dtype)


@tf.custom_gradient
def _fused_gelu(x):
    return _gelu_xla(x), lambda dy: _gelu_grad_xla(x, dy)


@keras.saving.register_keras_serializable(package="cifar10")
class Gelu(layers.Layer):
    """Exact GELU in float32 arithmetic, whatever the layer's dtype; XLA-fused when training.

    TensorFlow runs `gelu` and its gradient as about ten elementwise kernels, each a pass over
    the activation, plus two casts under mixed_bfloat16 (its bfloat16 erf is slower still).
    Training calls one fused XLA kernel each way instead: forward + backward of the fast net's
    seven activations took 117-130 ms instead of 353-365 per step here, and the whole step
    12-13 % less (docs/BENCHMARKS.md). Inference and export run plain TensorFlow ops, so a
    SavedModel needs no XLA. No weights: `.weights.h5` files written with Keras's
    `Activation("gelu")` load unchanged and give the same logits.
    """

    def call(self, inputs, training=None):
        if training:
            return _fused_gelu(inputs)
        return tf.cast(tf.nn.gelu(tf.cast(inputs, tf.float32)), inputs.dtype)


def _conv_block(x, width: int, name: str, bn_momentum: float, depth: int = 2, folded: bool = False):
    """conv -> maxpool -> BN -> GELU, then (depth - 1) x [conv -> BN -> GELU] (airbench's
    ConvGroup has depth 2; airbench96's, 3).

    `folded`: the serving form, each BN merged into its conv's kernel and bias (`fold_for_serving`).
    """

    def bn(y, suffix: str):
        if folded:
            return y
        # BN scale frozen at 1 (scale=False) as in airbench; Keras momentum is 1 - PyTorch's.
        return BatchNormalization(
            momentum=bn_momentum, epsilon=1e-5, scale=False, name=f"{name}_bn{suffix}"
        )(y)

    def gelu(y, suffix: str):
        return Gelu(name=f"{name}_act{suffix}")(y)

    def conv(y, suffix: str):
        return layers.Conv2D(
            width, 3, padding="same", use_bias=folded, name=f"{name}_conv{suffix}"
        )(y)

    x = layers.MaxPooling2D(2, name=f"{name}_pool")(conv(x, "1"))
    x = gelu(bn(x, "1"), "1")
    for j in range(2, depth + 1):
        x = gelu(bn(conv(x, str(j)), str(j)), str(j))
    return x


def build_fast(
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int = 32,
    widths: Sequence[int] = (64, 256, 256),
    depth: int = 2,
    bn_momentum: float = 0.4,
    logit_scale: float = LOGIT_SCALE,
    folded: bool = False,
) -> keras.Model:
    """2x2 patch-whitening conv, three conv groups of `depth` convs, global max-pool, scaled
    linear head.

    The whitening kernel is set from the data by `init_whitening` and never trained.
    `folded` builds the serving form that `fold_for_serving` fills: no normalisation, BN or
    logit-scale layers, their affine maps merged into the neighbouring convs and head.
    """
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    # float32 even under mixed_bfloat16: the whitening filters scale pixel differences up to
    # ~25x, and bfloat16's 3 significant digits there made the BN statistics lag the weights
    # (test accuracy in inference mode 24 % after epoch 1 instead of 68 %).
    x = inputs if folded else _normalize(inputs, mean, std, dtype="float32")
    x = layers.Conv2D(24, 2, padding="valid", name="whiten", dtype="float32")(x)
    x = Gelu(name="whiten_act", dtype="float32")(x)
    for i, width in enumerate(widths, start=1):
        x = _conv_block(x, width, f"block{i}", bn_momentum, depth, folded)
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    x = layers.Dense(num_classes, use_bias=False, name="head")(x)
    if not folded:
        x = layers.Rescaling(logit_scale, name="logit_scale")(x)
    outputs = layers.Activation("linear", dtype="float32", name="logits")(x)
    model = keras.Model(inputs, outputs, name="fast_folded" if folded else "fast")
    if not folded:
        _dirac_init(model)
    return model


def fold_for_serving(model: keras.Model) -> keras.Model:
    """The same function as a trained `fast` model (to float rounding) in fewer ops.

    In inference every BN (scale frozen at 1) is x * inv + (beta - mean * inv) with inv > 0, so
    it moves into the conv before it, through the max-pool between them (max commutes with a
    positive scale). The input normalisation moves into the whitening conv (valid padding, so
    no padded border sees the difference) and the logit scale into the head. That removes 13
    elementwise passes over activations per forward pass, which is what batch-1 serving spends
    much of its time on.
    """
    norm = model.get_layer("normalize")
    mean = np.ravel(np.asarray(norm.mean, np.float64))
    # As keras.layers.Normalization divides: a channel that never varied in training (std 0)
    # is divided by epsilon, not by zero.
    std = np.maximum(
        np.sqrt(np.ravel(np.asarray(norm.variance, np.float64))), keras.config.epsilon()
    )
    blocks = range(1, sum(layer.name.endswith("_conv1") for layer in model.layers) + 1)
    widths = [model.get_layer(f"block{i}_conv1").filters for i in blocks]
    depth = sum(layer.name.startswith("block1_conv") for layer in model.layers)
    folded = build_fast(
        model.output_shape[-1], mean, std, model.input_shape[1], widths, depth, folded=True
    )
    whiten = model.get_layer("whiten")
    kernel = whiten.kernel.numpy().astype(np.float64)
    _set(
        folded.get_layer("whiten"),
        kernel / std[None, None, :, None],
        whiten.bias.numpy() - np.einsum("hwco,c->o", kernel, mean / std),
    )
    for i in blocks:
        for j in range(1, depth + 1):
            bn = model.get_layer(f"block{i}_bn{j}")
            inv = 1.0 / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
            _set(
                folded.get_layer(f"block{i}_conv{j}"),
                model.get_layer(f"block{i}_conv{j}").kernel.numpy() * inv,
                bn.beta.numpy() - bn.moving_mean.numpy() * inv,
            )
    scale = float(model.get_layer("logit_scale").scale)
    _set(folded.get_layer("head"), model.get_layer("head").kernel.numpy() * scale)
    return folded


def _set(layer: layers.Layer, *weights: np.ndarray) -> None:
    layer.set_weights([np.asarray(w, np.float32) for w in weights])


def _dirac_init(model: keras.Model) -> None:
    """Start each conv's first in-channels filters as identity: faster early training (airbench)."""
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D) and layer.name != "whiten":
            k = np.array(layer.kernel.numpy())
            kh, kw, cin, cout = k.shape
            n = min(cin, cout)
            k[:, :, :, :n] = 0.0
            k[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
            layer.kernel.assign(k)


def init_whitening(model: keras.Model, images: np.ndarray, eps: float = 5e-4) -> None:
    """Set the 2x2 whitening kernel from the eigenvectors of the training patch covariance."""
    layer = model.get_layer("whiten")
    norm = model.get_layer("normalize")
    x = np.asarray(norm(images.astype(np.float32)), np.float32)
    patches = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(1, 2))  # N,H,W,C,2,2
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12)  # (kh, kw, c) order
    cov = np.cov(patches, rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    filters = eigenvectors / np.sqrt(eigenvalues + eps)  # 12 x 12, column per filter
    kernel = np.concatenate([filters, -filters], axis=1).reshape(2, 2, 3, 24)
    layer.kernel.assign(kernel.astype(np.float32))
    layer.bias.assign(np.zeros(24, np.float32))


# ---------------------------------------------------------------- vgg (reference recipe)


def build_vgg(
    num_classes: int, mean: Sequence[float], std: Sequence[float], image_size: int = 32
) -> keras.Model:
    """8 convs in 4 blocks (32..256), BN + ReLU, dropout 0.2 -> 0.5, L2 1e-4: ~1.19 M params."""
    reg = keras.regularizers.L2(1e-4)
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = _normalize(inputs, mean, std)
    for i, (width, drop) in enumerate(zip((32, 64, 128, 256), (0.2, 0.3, 0.4, 0.5)), start=1):
        for j in (1, 2):
            x = layers.Conv2D(
                width, 3, padding="same", kernel_regularizer=reg, name=f"block{i}_conv{j}"
            )(x)
            x = BatchNormalization(name=f"block{i}_bn{j}")(x)
            x = layers.Activation("relu", name=f"block{i}_relu{j}")(x)
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        x = layers.Dropout(drop, name=f"block{i}_drop")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(num_classes, kernel_regularizer=reg, name="head")(x)
    outputs = layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name="vgg")


# ---------------------------------------------------------------- work and loading


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of the conv and dense layers for one image: the work unit of issue 10."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            total += conv_flops(layer)
        elif isinstance(layer, layers.Dense):
            cin, cout = layer.kernel.shape
            total += 2 * cin * cout
    return int(total)


def conv_flops(layer: layers.Conv2D) -> int:
    """Multiply-adds x 2 of one image's forward pass through a built Conv2D layer."""
    _, h, w, cout = layer.output.shape
    kh, kw, cin, _ = layer.kernel.shape
    return 2 * h * w * cout * kh * kw * cin


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Keras's global dtype policy for the models built inside, restored afterwards (layers
    keep the policy they were built with)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


class UnfinishedRunError(FileNotFoundError):
    """A run folder without a finished run's outputs (still training, or interrupted)."""


def load_for_inference(run_dir: str | Path) -> tuple[keras.Model, dict]:
    """Rebuild a run's model in float32 (fast on every CPU) with its final weights."""
    run_dir = Path(run_dir)
    if not is_finished(run_dir):
        hint = (
            "its training has not finished: re-run its training command to resume"
            if (run_dir / RUN_OPTIONS).is_file()
            else "it is not a training run folder"
        )
        raise UnfinishedRunError(f"{run_dir} holds no finished run ({hint})")
    meta = read_meta(run_dir)
    return build_for_inference(meta, run_dir / FINAL_WEIGHTS), meta


def build_for_inference(meta: dict, weights: Path) -> keras.Model:
    """The model a run's meta.json describes, in float32, with `weights` loaded: what export
    serves and evaluation measures."""
    with precision_policy("float32"):
        model = build_model(
            meta["arch"],
            len(meta["class_names"]),
            meta["mean"],
            meta["std"],
            meta.get("image_size", 32),
            meta.get("widths", (64, 256, 256)),
            meta.get("depth", 2),
            meta.get("logit_scale", LOGIT_SCALE),
        )
    model.load_weights(weights)
    return model


def network_constants(model: keras.Model) -> dict:
    """The constants meta.json records, beside the recipe's widths and depth, to rebuild `model`
    for inference as it was trained: its logit scale (not a weight)."""
    names = {layer.name for layer in model.layers}
    return (
        {"logit_scale": float(model.get_layer("logit_scale").scale)}
        if "logit_scale" in names
        else {}
    )
