import math

import jax
import numpy as np
import pytest

import topojax.metrics.map_quality as mq
from topojax.metrics import (
    ComponentStats,
    auc,
    blur_curve,
    components,
    evaluate_maps,
    resize_curve,
    to_rgb,
)

S = 48


def test_blur_operators_keep_constants_and_scale_with_size():
    ops = mq._blur_operators(S, tuple(mq.blur_sigmas(S)))
    assert ops.shape == (10, S, S)
    np.testing.assert_allclose(ops.sum(axis=2), 1.0, atol=1e-6)
    np.testing.assert_allclose(mq.blur_sigmas(300), np.arange(2, 21, 2))
    assert mq.resize_sizes(300) == tuple(range(55, 5, -5))
    assert mq.resize_sizes(S) == (9, 8, 7, 6, 6, 5, 4, 3, 2, 2)


@pytest.mark.parametrize("method", ["cubic", "linear"])
def test_resize_matrix_equals_jax_image_resize(method):
    image = np.random.default_rng(3).random((S, S)).astype(np.float32)
    down = jax.image.resize(image, (7, 7), method)
    back = np.asarray(jax.image.resize(down, (S, S), method))
    op = mq._resize_operators(S, (7,), method)[0]
    np.testing.assert_allclose(op @ image @ op.T, back, atol=1e-5)


@pytest.mark.parametrize("curve_fn", [blur_curve, resize_curve])
def test_constant_zero_checkerboard_large_ramp_below_noise(curve_fn):
    rows, cols = np.mgrid[0:S, 0:S]
    constant = np.full((2, S, S, 3), 0.4)
    checker = ((rows + cols) % 2).astype(float)[None]
    ramp = (cols / (S - 1)).astype(float)[None]
    noise = np.random.default_rng(0).random((1, S, S))

    zero = curve_fn(constant)
    assert zero.shape == (10,)
    np.testing.assert_allclose(zero, 0.0, atol=1e-10)
    checker_curve, ramp_curve, noise_curve = (
        curve_fn(image) for image in (checker, ramp, noise)
    )
    assert checker_curve[-1] > 0.2  # ~ variance of a 0/1 checkerboard: 0.25
    assert auc(ramp_curve) < 0.1 * auc(noise_curve)
    assert auc(noise_curve) < auc(checker_curve)
    if curve_fn is blur_curve:  # stronger blur, larger error
        assert np.all(np.diff(noise_curve) > 0)


def test_per_group_and_group_mean():
    rng = np.random.default_rng(1)
    images = rng.random((3, S, S))
    per_group = blur_curve(images, per_group=True)
    assert per_group.shape == (3, 10)
    np.testing.assert_allclose(per_group.mean(axis=0), blur_curve(images), rtol=1e-12)
    np.testing.assert_allclose(per_group[1], blur_curve(images[1:2]), rtol=1e-6)
    before = mq._operator_errors._cache_size()
    blur_curve(rng.random((3, S, S)))
    assert mq._operator_errors._cache_size() == before


def test_rgb_conversion_nan_white_and_map_quality():
    values = np.random.default_rng(2).standard_normal((2, S, S)).astype(np.float32)
    values[:, :5, :5] = np.nan
    rgb = np.asarray(to_rgb(values))
    assert rgb.shape == (2, S, S, 3)
    np.testing.assert_array_equal(rgb[:, :5, :5], 1.0)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    result = evaluate_maps(values)
    np.testing.assert_allclose(result["blur_curve"], blur_curve(rgb), rtol=1e-6)
    assert result["blur_auc"] == pytest.approx(auc(result["blur_curve"]))
    assert result["resize_curve"].shape == (10,)
    with pytest.raises(ValueError, match="to_rgb"):
        blur_curve(values)


def test_auc_trapezoid_unit_spacing():
    assert auc([0.0, 1.0, 2.0]) == pytest.approx(2.0)
    assert auc(np.full(10, 3.0)) == pytest.approx(27.0)
    np.testing.assert_allclose(auc([[1.0, 3.0], [0.0, 0.0]]), [2.0, 0.0])
    assert auc([5.0]) == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_groups"):
        blur_curve(np.zeros((S, S, 3, 1, 1)))
    with pytest.raises(ValueError, match="resize method"):
        resize_curve(np.zeros((1, S, S)), method="box")
    with pytest.raises(ValueError, match="n_strengths"):
        resize_curve(np.zeros((1, S, S)), n_strengths=12)


def test_components_of_hand_made_blobs():
    image = np.zeros((40, 40))
    image[2:8, 2:8] = 1.0  # red blob, 36 px
    image[20:30, 20:25] = 0.5  # red blob, 50 px
    image[10:14, 30:34] = -0.8  # blue, 16 px ...
    image[14:18, 34:38] = -0.8  # ... joined diagonally (8-connectivity): 32 px
    image[35:37, 2:4] = 1.0  # red, 4 px: below the minimum area
    image[0:10, 15:20] = 0.05  # weak: below 0.1 * clim
    image[38:40, 30:40] = np.nan
    stats = components(image, min_area=5)
    assert isinstance(stats, ComponentStats)
    assert stats.n_positive == 2 and stats.n_negative == 1
    assert stats.n_components == 3
    assert stats.mean_area == pytest.approx((36 + 50 + 32) / 3 / 1600)
    # default minimum area: ceil(10 / 100^2 * 40 * 40) = 2 px -> the 4 px blob counts
    assert components(image).n_positive == 3
    assert math.ceil(10 / 100**2 * 1600) == 2
    # with 4-connectivity the blue pair would be two; with a larger clim the
    # 0.5 blob drops below threshold 0.1 * 6 = 0.6
    assert components(image, clim=6.0, min_area=5).n_positive == 1


def test_components_batched_and_empty():
    images = np.zeros((2, 3, 20, 20))
    images[0, 1, 5:10, 5:10] = -1.0
    stats = components(images)
    assert stats.n_negative.shape == (2, 3)
    assert stats.n_negative[0, 1] == 1 and stats.n_negative.sum() == 1
    assert stats.mean_area[1, 2] == 0.0
    with pytest.raises(ValueError, match="threshold"):
        components(images, threshold=0.0)
