"""The custom Keras layers of the networks: faster kernels for three standard layers.

All are registered with Keras (package "cifar10"), so `import training.layers` (done by
`training.models`) is what opening a run's `model.keras` needs.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


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
def _gelu_xla(x, out_dtype):
    xf = tf.cast(x, tf.float32)
    return tf.cast(0.5 * xf * (1.0 + tf.math.erf(xf * _SQRT_HALF)), out_dtype)


@tf.function(jit_compile=True)
def _gelu_grad_xla(x, dy):
    xf = tf.cast(x, tf.float32)
    cdf = 0.5 * (1.0 + tf.math.erf(xf * _SQRT_HALF))
    pdf = _INV_SQRT_2PI * tf.exp(-0.5 * xf * xf)
    return tf.cast(tf.cast(dy, tf.float32) * (cdf + xf * pdf), x.dtype)


def _fused_gelu(x, out_dtype):
    @tf.custom_gradient
    def gelu(x):
        return _gelu_xla(x, out_dtype), lambda dy: _gelu_grad_xla(x, dy)

    return gelu(x)


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

    `output_dtype` (default: the input's) rounds the float32 result once to another dtype
    inside the same kernel: the float32 whitening stage hands bfloat16 to the conv groups
    without a separate cast each way.
    """

    def __init__(self, output_dtype: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.output_dtype = output_dtype

    def call(self, inputs, training=None):
        out_dtype = self.output_dtype or inputs.dtype
        if training:
            return _fused_gelu(inputs, out_dtype)
        return tf.cast(tf.nn.gelu(tf.cast(inputs, tf.float32)), out_dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "output_dtype": self.output_dtype}


def filter_grad_as_matmuls(x, dy):
    """The filter gradient of a 3x3 SAME stride-1 conv, tap by tap: for tap (i, j), the input
    shifted by (i - 1, j - 1), flattened to [pixels, in], transposed times the output gradient
    flattened to [pixels, out]."""
    _, h, w, cin = x.shape
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    flat_dy = tf.reshape(dy, [-1, dy.shape[-1]])
    taps = [
        tf.matmul(tf.reshape(padded[:, i : i + h, j : j + w, :], [-1, cin]), flat_dy,
                  transpose_a=True)
        for i in range(3)
        for j in range(3)
    ]  # fmt: skip
    return tf.reshape(tf.stack(taps), [3, 3, cin, dy.shape[-1]])


@tf.custom_gradient
def conv3x3_matmul_filter_grad(x, kernel):
    """tf.nn.conv2d(x, kernel, 1, "SAME") with TensorFlow's own forward and input gradient, and
    the filter gradient as nine matmuls (filter_grad_as_matmuls)."""

    def grad(dy):
        dx = tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=[1, 1, 1, 1],
            padding="SAME",
        )  # fmt: skip
        return dx, filter_grad_as_matmuls(x, dy)

    return tf.nn.conv2d(x, kernel, 1, "SAME"), grad


@keras.saving.register_keras_serializable(package="cifar10")
class Conv2D(layers.Conv2D):
    """Keras's Conv2D; with `matmul_filter_grad`, a 3x3 SAME one computes its filter gradient as
    nine matmuls, one per kernel tap, instead of with TensorFlow's kernel for it.

    On an AMX CPU in bfloat16, TensorFlow's filter-gradient kernel is the slowest pass of the
    convs with 256 input channels (190-590 GFLOP/s against 1,500-2,400 for their forward and
    input-gradient passes); as nine matmuls those gradients took 14-91 ms instead of 58-113,
    and a training step about a tenth less time. For the 64-channel convs, and in float32, the
    matmuls are slower (docs/BENCHMARKS.md, "Where an AMX step's time goes" and "Filter
    gradients as nine matmuls"). The forward pass is TensorFlow's, so inference and export are
    unchanged. Named as Keras's layer for the reason BatchNormalization is: weights files key
    layers by class name.
    """

    def __init__(self, *args, matmul_filter_grad: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.matmul_filter_grad = matmul_filter_grad
        plain_3x3 = (
            self.kernel_size == (3, 3)
            and self.strides == (1, 1)
            and self.dilation_rate == (1, 1)
            and self.padding == "same"
            and self.data_format == "channels_last"
            and self.groups == 1
        )
        if matmul_filter_grad and not plain_3x3:
            raise ValueError("matmul_filter_grad needs a 3x3, stride-1, SAME, channels-last conv")

    def convolution_op(self, inputs, kernel):
        if self.matmul_filter_grad:
            return conv3x3_matmul_filter_grad(inputs, tf.convert_to_tensor(kernel))
        return super().convolution_op(inputs, kernel)

    def get_config(self) -> dict:
        return {**super().get_config(), "matmul_filter_grad": self.matmul_filter_grad}
