"""The recipe's two newest parts checked against what they promise: Muon's orthogonalised step
and the alternating flip. Tensors are small; no training runs here."""

import numpy as np
import pytest
import tensorflow as tf

from training.augment import augment, flip_mask
from training.config import RECIPES
from training.optim import AirbenchSGD, lookahead_decay, orthogonalize


def test_the_lookahead_decay_is_the_rate_per_step_times_a_cube_ramp():
    """airbench: decay = rate ** (steps since the last update) * (step / total) ** 3, so the
    early EMA follows the weights and the late one averages them."""
    assert lookahead_decay(5, 10, steps=5, rate=0.9) == pytest.approx(0.9**5 * 0.125)
    assert lookahead_decay(10, 10, steps=1, rate=0.95) == pytest.approx(0.95)
    assert lookahead_decay(0, 10, steps=5, rate=0.95) == 0


def test_orthogonalize_brings_every_singular_value_near_one():
    rng = np.random.default_rng(0)
    # Badly conditioned on purpose: singular values spread over two decades.
    u, _ = np.linalg.qr(rng.normal(size=(64, 64)))
    v, _ = np.linalg.qr(rng.normal(size=(576, 64)))
    matrix = (u * np.logspace(0, -2, 64)) @ v.T
    out = orthogonalize(tf.constant(matrix, tf.float32)).numpy()
    singular = np.linalg.svd(out, compute_uv=False)
    # Muon's coefficients trade exactness for speed: values land in roughly [0.7, 1.2].
    assert singular.min() > 0.6 and singular.max() < 1.3, singular
    # Same singular vectors: the direction of the step is kept, only its spectrum flattened.
    cosine = np.sum(out * (u @ v.T)) / (np.linalg.norm(out) * np.linalg.norm(u @ v.T))
    assert cosine > 0.95


def test_orthogonalize_handles_tall_matrices_by_transposing():
    matrix = tf.random.stateless_normal([300, 40], seed=[1, 2])
    out = orthogonalize(matrix).numpy()
    assert out.shape == (300, 40)
    singular = np.linalg.svd(out, compute_uv=False)
    assert singular.min() > 0.6 and singular.max() < 1.3


def test_muon_moves_conv_filters_and_sgd_moves_the_rest():
    start = 1 / 6  # 288 weights of 1/6: norm sqrt(8), the scale muon_normalize pins them to
    conv = tf.Variable(tf.fill([3, 3, 4, 8], start))
    dense = tf.Variable(tf.ones([8, 2]))
    opt = AirbenchSGD([conv, dense], RECIPES["fast"], whiten_bias=None)
    grads = [tf.random.stateless_normal(v.shape, seed=[3, i]) for i, v in enumerate([conv, dense])]
    opt.apply(grads, tf.constant(1.0), tf.constant(1.0))
    step = (start - conv.numpy()).reshape(36, 8).T  # [out, fan-in]
    # A Muon step has a flat spectrum (scaled by the lr); an SGD step would not.
    singular = np.linalg.svd(step, compute_uv=False) / RECIPES["fast"].muon_lr
    assert singular.min() > 0.6 and singular.max() < 1.3
    assert not np.allclose(dense.numpy(), 1.0)


def test_normalized_muon_steps_do_not_depend_on_the_filters_scale():
    # BatchNorm after every conv makes the filters' scale free, and unnormalised Muon steps
    # shrink against weights that grow; pinning the norm keeps each step the same share.
    recipe = RECIPES["fast"]
    assert recipe.muon_normalize
    start = tf.random.stateless_normal([3, 3, 16, 32], seed=[5, 6])
    grad = tf.random.stateless_normal([3, 3, 16, 32], seed=[7, 8])
    small, large = tf.Variable(start), tf.Variable(10 * start)
    for conv in (small, large):
        AirbenchSGD([conv], recipe, whiten_bias=None).apply([grad], 1.0, 1.0)
    np.testing.assert_allclose(small.numpy(), large.numpy(), atol=1e-5)
    # Without a gradient the step is nothing but the rescale: norm sqrt(out channels).
    still = tf.Variable(10 * start)
    AirbenchSGD([still], recipe, whiten_bias=None).apply([tf.zeros_like(grad)], 1.0, 1.0)
    np.testing.assert_allclose(np.linalg.norm(still.numpy()), 32**0.5, rtol=1e-5)


def test_alternating_flip_mirrors_each_image_in_exactly_one_of_two_epochs():
    indices = np.arange(1000)
    even = flip_mask(indices, epoch=4, step=0, seed=3, n_images=1000, alternate=True)
    odd = flip_mask(indices, epoch=5, step=1, seed=3, n_images=1000, alternate=True)
    assert np.all(even != odd)
    assert 400 < even.sum() < 600  # a random half, not a fixed pattern by index
    other_seed = flip_mask(indices, epoch=4, step=0, seed=4, n_images=1000, alternate=True)
    assert np.any(even != other_seed)


def test_random_flip_is_reproducible_per_step():
    indices = np.arange(500)
    a = flip_mask(indices, epoch=0, step=7, seed=1, n_images=500, alternate=False)
    b = flip_mask(indices, epoch=0, step=7, seed=1, n_images=500, alternate=False)
    c = flip_mask(indices, epoch=0, step=8, seed=1, n_images=500, alternate=False)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_augment_mirrors_exactly_the_masked_images():
    images = tf.constant(np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3))
    out = augment(images, tf.constant([True, False]), tf.constant([0, 0]), translate=0).numpy()
    np.testing.assert_array_equal(out[0], images.numpy()[0, :, ::-1])
    np.testing.assert_array_equal(out[1], images.numpy()[1])


@pytest.mark.parametrize("shift", [1, 2, 4])
def test_translate_crops_the_reflect_padded_mirrored_image_at_a_random_offset(shift):
    """Each image is a crop of itself (mirrored where the mask says), reflect-padded by
    `shift` as numpy pads, at an offset anywhere from 0 to 2 * shift on each axis."""
    rng = np.random.default_rng(shift)
    images = rng.integers(0, 256, (64, 9, 7, 3)).astype(np.uint8)  # distinct crops, not square
    flips = rng.random(64) < 0.5
    seed = tf.constant([5, 11])
    out = augment(tf.constant(images), tf.constant(flips), seed, translate=shift).numpy()
    offsets = set()
    for image, flip, result in zip(images, flips, out):
        source = image[:, ::-1] if flip else image
        padded = np.pad(source, [(shift, shift), (shift, shift), (0, 0)], mode="reflect")
        found = [
            (dy, dx)
            for dy in range(2 * shift + 1)
            for dx in range(2 * shift + 1)
            if np.array_equal(padded[dy : dy + 9, dx : dx + 7], result)
        ]
        assert len(found) == 1, found
        offsets.add(found[0])
    assert len(offsets) > min(10, (2 * shift + 1) ** 2 // 2)  # random, not one fixed shift
    again = augment(tf.constant(images), tf.constant(flips), seed, translate=shift).numpy()
    assert np.array_equal(again, out)  # seeded: a resumed run sees the same batches


def _augment_with_copies(images, flip, seed, translate, cutout):
    """The augmentation as it was written before the thirtieth session: a mirrored copy, a
    reflect-padded copy, then the crop. Kept here as the reference that the index form must
    equal, so that a checkpoint from an older run resumes on the same batches."""
    from training.augment import _cut_out

    b, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    if translate:
        p = translate
        padded = tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        offsets = tf.random.stateless_uniform(
            [b, 2], seed=seed + 1, minval=0, maxval=2 * p + 1, dtype=tf.int32
        )
        rows = offsets[:, :1] + tf.range(h)[None, :]
        cols = offsets[:, 1:] + tf.range(w)[None, :]
        images = tf.gather(padded, rows, axis=1, batch_dims=1)
        images = tf.gather(images, cols, axis=2, batch_dims=1)
    return _cut_out(images, seed, cutout) if cutout else images


@pytest.mark.parametrize("translate", [0, 2, 4])
@pytest.mark.parametrize("cutout", [0, 8])
def test_augment_gives_the_same_batches_as_before_bit_for_bit(translate, cutout):
    rng = np.random.default_rng(translate + cutout)
    images = tf.constant(rng.integers(0, 256, (96, 32, 32, 3)).astype(np.uint8))
    flips = tf.constant(rng.random(96) < 0.5)
    for seed in ([0, 0], [3, 17], [9, 400]):
        seed = tf.constant(seed)
        new = augment(images, flips, seed, translate, cutout).numpy()
        old = _augment_with_copies(images, flips, seed, translate, cutout).numpy()
        np.testing.assert_array_equal(new, old)


def _cut(images: np.ndarray, seed: int, side: int) -> np.ndarray:
    flips = tf.zeros([len(images)], tf.bool)
    return augment(tf.constant(images), flips, tf.constant([seed, 0]), 0, cutout=side).numpy()


def test_cutout_zeroes_one_square_per_image_that_may_hang_over_the_edge():
    images = np.full((256, 12, 12, 3), 200, np.uint8)
    out = _cut(images, seed=3, side=5)
    sizes = set()
    for image in out:
        zero = (image == 0).all(axis=-1)
        assert ((image == 0) | (image == 200)).all() and (zero == (image == 0).any(-1)).all()
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        # one axis-aligned rectangle, whole: every pixel in its bounding box is zero
        assert zero[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
        assert zero.sum() == len(rows) * len(cols)
        sizes.add((len(rows), len(cols)))
    # full squares away from the edge, clipped ones (down to 3 = 5 // 2 + 1) at it
    assert (5, 5) in sizes and max(sizes) == (5, 5) and min(min(s) for s in sizes) == 3


def test_cutout_is_reproducible_per_seed_and_off_at_zero():
    images = np.random.default_rng(0).integers(1, 256, (8, 12, 12, 3)).astype(np.uint8)
    assert np.array_equal(_cut(images, 1, 5), _cut(images, 1, 5))
    assert not np.array_equal(_cut(images, 1, 5), _cut(images, 2, 5))
    assert np.array_equal(_cut(images, 1, 0), images)
