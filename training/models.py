"""Model definitions: `fast` (airbench-style) and `vgg` (the project's original reference).

Every model takes float32 pixels in 0..255 ``[N, 32, 32, 3]`` and returns float32 logits
``[N, C]``. Normalisation is inside the model, so no client can forget it: the first layer of a
trained model, and folded into the whitening conv of the serving form (`training.fold`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import keras
import numpy as np
from keras import layers

from training.config import ARCHITECTURES
from training.layers import BatchNormalization, Conv2D, Gelu

# Conv layers whose filters are set from the data (init_whitening) and never trained, as in
# airbench: the trainer leaves them out of the optimizer, bench.conv_passes out of its timings.
FROZEN_KERNELS: dict[str, tuple[str, ...]] = {"fast": ("whiten",)}
# The `fast` net's head divides its logits by 9 (airbench). Not a weight, so meta.json records
# it (network_constants) and inference rebuilds a run with the scale it was trained with: a
# changed default must not change an old run's served probabilities. Runs from before it was
# recorded were all trained with 1/9.
LOGIT_SCALE = 1 / 9

# The nine-matmul filter gradient is faster for convs with this many input channels or more:
# on an AMX CPU in bfloat16 the 64-channel convs ran it 2.9-4.4x slower than TensorFlow's
# kernel, the 256-channel ones 1.2-4.1x faster (docs/BENCHMARKS.md).
MATMUL_GRAD_MIN_CHANNELS = 256


def build_model(
    arch: str,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int = 32,
    widths: Sequence[int] = (64, 256, 256),
    depth: int = 2,
    logit_scale: float = LOGIT_SCALE,
    matmul_filter_grad: bool = False,
) -> keras.Model:
    """`matmul_filter_grad`: the `fast` net's wide convs train with training.layers.Conv2D's
    nine-matmul filter gradient (the vgg net has no measurement of it, so never)."""
    if arch == "fast":
        return build_fast(
            num_classes, mean, std, image_size, widths, depth, logit_scale=logit_scale,
            matmul_filter_grad=matmul_filter_grad,
        )  # fmt: skip
    if arch == "vgg":
        return build_vgg(num_classes, mean, std, image_size)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")


def _normalize(x, mean: Sequence[float], std: Sequence[float], dtype: str | None = None):
    variance = np.square(np.asarray(std, np.float32))
    return layers.Normalization(
        mean=list(mean), variance=list(variance), name="normalize", dtype=dtype
    )(x)


# ---------------------------------------------------------------- fast (airbench94 shape)


def _conv_block(
    x,
    width: int,
    name: str,
    bn_momentum: float,
    depth: int = 2,
    folded: bool = False,
    matmul_filter_grad: bool = False,
):
    """conv -> maxpool -> BN -> GELU, then (depth - 1) x [conv -> BN -> GELU] (airbench's
    ConvGroup has depth 2; airbench96's, 3).

    `folded`: the serving form, each BN merged into its conv's kernel and bias (`fold_for_serving`).
    `matmul_filter_grad`: convs with at least MATMUL_GRAD_MIN_CHANNELS inputs train with the
    nine-matmul filter gradient (training.layers.Conv2D).
    """

    def bn(y, suffix: str):
        if folded:
            return y
        # BN scale frozen at 1 (scale=False) as in airbench. Keras momentum is 1 - PyTorch's:
        # 0.4 here weighs each batch 0.6, where airbench94 weighs it 0.4 (Keras 0.6); the mirror
        # measured both the same (docs/BENCHMARKS.md, sweep 14).
        return BatchNormalization(
            momentum=bn_momentum, epsilon=1e-5, scale=False, name=f"{name}_bn{suffix}"
        )(y)

    def gelu(y, suffix: str):
        return Gelu(name=f"{name}_act{suffix}")(y)

    def conv(y, suffix: str):
        return Conv2D(
            width, 3, padding="same", use_bias=folded, name=f"{name}_conv{suffix}",
            matmul_filter_grad=matmul_filter_grad and y.shape[-1] >= MATMUL_GRAD_MIN_CHANNELS,
        )(y)  # fmt: skip

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
    matmul_filter_grad: bool = False,
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
    # ... but handed on in the conv groups' dtype, cast inside the GELU's kernel: a separate
    # cast each way took 41 ms of traced op time a step on an AMX CPU (docs/BENCHMARKS.md).
    groups_dtype = keras.mixed_precision.global_policy().compute_dtype
    x = Gelu(name="whiten_act", dtype="float32", output_dtype=groups_dtype)(x)
    for i, width in enumerate(widths, start=1):
        x = _conv_block(x, width, f"block{i}", bn_momentum, depth, folded, matmul_filter_grad)
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    x = layers.Dense(num_classes, use_bias=False, name="head")(x)
    if not folded:
        x = layers.Rescaling(logit_scale, name="logit_scale")(x)
    outputs = layers.Activation("linear", dtype="float32", name="logits")(x)
    model = keras.Model(inputs, outputs, name="fast_folded" if folded else "fast")
    if not folded:
        _dirac_init(model)
    return model


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


# ---------------------------------------------------------------- precision


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
