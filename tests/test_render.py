import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.interpolate import griddata

from topojax.layout.base import Layout
from topojax.render import (
    RenderPlan,
    apply_plan,
    nearest_neuron,
    neuron_spacing,
    pixel_centers,
    place_in_shape,
    render,
    render_plan,
)

R = 24

# the module, not the function of the same name re-exported by topojax
render_mod = importlib.import_module("topojax.render")


def griddata_images(coords, values, resolution):
    pixels = pixel_centers(resolution)
    return np.stack(
        [
            griddata(np.asarray(coords, np.float64), v, pixels, method="linear")
            for v in np.asarray(values, np.float64)
        ]
    ).reshape(len(values), resolution, resolution)


def brute_nearest(points, resolution):
    pixels = pixel_centers(resolution)
    dist = np.linalg.norm(pixels[:, None, :] - points[None, :, :], axis=2)
    return dist


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_neurons", [4, 30])
def test_linear_matches_griddata(seed, n_neurons):
    rng = np.random.default_rng(seed)
    coords = rng.random((n_neurons, 2)).astype(np.float32)
    values = rng.standard_normal((2, n_neurons)).astype(np.float32)
    images = np.asarray(render(coords, values, resolution=R))
    expected = griddata_images(coords, values, R)
    assert images.shape == (2, R, R) and images.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(images), np.isnan(expected))
    assert np.isnan(expected).any() and np.isfinite(expected).any()
    np.testing.assert_allclose(images, expected, atol=1e-5, equal_nan=True)


@settings(max_examples=10, deadline=None)
@given(
    coords=hnp.arrays(
        np.float32,
        (30, 2),
        elements=st.floats(0, 1, width=32, allow_nan=False),
    ),
    values=hnp.arrays(
        np.float32, (2, 30), elements=st.floats(-10, 10, width=32, allow_nan=False)
    ),
)
def test_linear_matches_griddata_property(coords, values):
    plan = render_plan(coords, resolution=R)
    images = np.asarray(apply_plan(plan, values))
    if plan.fallback:  # collinear/duplicate-only draws: griddata raises there
        assert np.isfinite(images).any()
        return
    expected = griddata_images(coords, values, R)
    np.testing.assert_array_equal(np.isnan(images), np.isnan(expected))
    # values up to 10 in magnitude: 1e-5 relative
    np.testing.assert_allclose(images, expected, atol=1e-4, equal_nan=True)


def test_duplicates_match_griddata():
    coords = np.array([[0.1, 0.1], [0.1, 0.1], [0.9, 0.2], [0.5, 0.9], [0.9, 0.2]])
    values = np.array([[1.0, 1.0, 2.0, 3.0, 2.0]], np.float32)
    images = np.asarray(render(coords, values, resolution=R))
    expected = griddata_images(coords, values, R)
    np.testing.assert_allclose(images, expected, atol=1e-5, equal_nan=True)
    assert not render_plan(coords, resolution=R).fallback


def test_single_neuron_is_a_disc():
    coords = np.array([[0.5, 0.5]])
    plan = render_plan(coords, resolution=R)
    assert plan.fallback
    image = np.asarray(apply_plan(plan, np.array([[2.5]])))[0]
    dist = np.linalg.norm(pixel_centers(R) - 0.5, axis=1).reshape(R, R)
    radius = min(3 * render_mod.FALLBACK_SPACING, 0.25)
    np.testing.assert_array_equal(np.isfinite(image), dist <= radius + 1e-6)
    np.testing.assert_array_equal(image[np.isfinite(image)], 2.5)


@pytest.mark.parametrize(
    "coords",
    [
        np.array([[0.2, 0.3], [0.7, 0.6]]),  # N=2
        np.array([[0.1, 0.1], [0.4, 0.4], [0.9, 0.9]]),  # N=3 collinear
        np.array([[0.1, 0.5], [0.3, 0.5], [0.5, 0.5], [0.7, 0.5], [0.9, 0.5]]),
        np.array([[0.4, 0.4]] * 4),  # all at one place
        np.array([[0.2, 0.2], [0.2, 0.2], [0.8, 0.6]]),  # 2 distinct positions
    ],
)
def test_degenerate_linear_falls_back_to_nearest(coords):
    values = np.arange(1.0, len(coords) + 1.0)[None]
    plan = render_plan(coords, resolution=R)
    assert plan.fallback and plan.method == "linear"
    image = np.asarray(apply_plan(plan, values))[0]
    dist = brute_nearest(coords, R)
    nearest = dist.min(axis=1).reshape(R, R)
    max_distance = max(min(3 * neuron_spacing(coords), 0.25), np.sqrt(2) / R)
    drawn = np.isfinite(image)
    assert drawn.any() and not drawn.all()
    np.testing.assert_array_equal(drawn, nearest <= max_distance + 1e-6)
    # every drawn pixel shows the value of a nearest neuron
    closest = np.isclose(dist, dist.min(axis=1, keepdims=True), atol=1e-6)
    shown = image.ravel()
    for p in np.flatnonzero(drawn.ravel()):
        assert shown[p] in values[0][closest[p]]


def test_plan_reuse_equals_direct_call_and_layout_input():
    rng = np.random.default_rng(3)
    coords = rng.random((30, 2)).astype(np.float32)
    values = rng.standard_normal((2, 30)).astype(np.float32)
    layout = Layout(coords=jnp.asarray(coords), method="random")
    direct = render(layout, values, resolution=R)
    plan = render_plan(coords, resolution=R)
    assert isinstance(plan, RenderPlan)
    assert plan.indices.shape == (R * R, 3) and plan.weights.shape == (R * R, 3)
    np.testing.assert_array_equal(np.asarray(apply_plan(plan, values)), direct)
    # leading batch axes (epochs, groups)
    stacked = apply_plan(plan, np.stack([values, 2 * values]))
    assert stacked.shape == (2, 2, R, R)
    np.testing.assert_allclose(stacked[1], 2 * np.asarray(direct), atol=1e-6)
    single = apply_plan(plan, values[1])  # one map: (n_neurons,) -> (R, R)
    np.testing.assert_array_equal(np.asarray(single), np.asarray(direct)[1])
    # inside a caller's jit (tracers: no host-side finiteness check)
    traced = jax.jit(lambda v: apply_plan(plan, v))(values)
    np.testing.assert_allclose(traced, direct, atol=1e-6)
    # the jitted gather equals the same arithmetic in NumPy
    idx, weights = np.asarray(plan.indices), np.asarray(plan.weights)
    by_hand = (values[:, idx] * weights).sum(axis=-1)
    by_hand = np.where(np.asarray(plan.mask), by_hand, np.nan).reshape(2, R, R)
    np.testing.assert_allclose(direct, by_hand, atol=1e-6)


def test_apply_plan_does_not_recompile():
    rng = np.random.default_rng(4)
    coords = rng.random((30, 2)).astype(np.float32)
    plan = render_plan(coords, resolution=R)
    other_plan = render_plan(rng.random((30, 2)), resolution=R)
    apply_plan(plan, rng.standard_normal((2, 30)))
    before = render_mod._apply._cache_size()
    apply_plan(plan, rng.standard_normal((2, 30)))
    apply_plan(other_plan, rng.standard_normal((2, 30)).astype(np.float32))
    assert render_mod._apply._cache_size() == before
    # planning: a new layout with the same neuron count reuses the compiled search
    render_plan(coords, resolution=R, method="gaussian")
    before = render_mod._nearest_k._cache_size()
    render_plan(rng.random((30, 2)), resolution=R, method="gaussian")
    assert render_mod._nearest_k._cache_size() == before


def test_nearest_equals_brute_force_argmin():
    rng = np.random.default_rng(5)
    coords = rng.random((30, 2)).astype(np.float32)
    values = rng.standard_normal((1, 30)).astype(np.float32)
    image = np.asarray(
        render(coords, values, resolution=R, method="nearest", max_distance=np.inf)
    )[0]
    assert np.isfinite(image).all()
    dist = brute_nearest(coords.astype(np.float64), R)
    shown = image.ravel()
    for p in range(R * R):
        chosen = np.flatnonzero(values[0] == shown[p])
        assert dist[p, chosen].min() <= dist[p].min() + 1e-6


def test_nearest_masks_far_pixels():
    coords = np.array([[0.2, 0.2], [0.3, 0.25], [0.25, 0.3]])
    image = np.asarray(render(coords, np.ones((1, 3)), resolution=R, method="nearest"))[
        0
    ]
    nearest = brute_nearest(coords, R).min(axis=1).reshape(R, R)
    max_distance = max(min(3 * neuron_spacing(coords), 0.25), np.sqrt(2) / R)
    np.testing.assert_array_equal(np.isfinite(image), nearest <= max_distance + 1e-6)


def test_gaussian_constant_and_convex():
    rng = np.random.default_rng(6)
    coords = rng.random((30, 2)).astype(np.float32)
    values = np.stack([np.full(30, 1.7), rng.standard_normal(30)]).astype(np.float32)
    images = np.asarray(render(coords, values, resolution=R, method="gaussian"))
    drawn = np.isfinite(images[0])
    assert drawn.mean() > 0.8
    np.testing.assert_allclose(images[0][drawn], 1.7, rtol=1e-6)
    assert images[1][drawn].min() >= values[1].min() - 1e-6
    assert images[1][drawn].max() <= values[1].max() + 1e-6
    # smoother than nearest: smaller pixel-to-pixel differences
    nearest = np.asarray(render(coords, values[1:], resolution=R, method="nearest"))
    both = drawn[:, 1:] & drawn[:, :-1]
    smooth = np.abs(np.diff(images[1], axis=1))[both].mean()
    blocky = np.abs(np.diff(nearest[0], axis=1))[both].mean()
    assert smooth < blocky


def test_gaussian_far_pixels_do_not_underflow():
    coords = np.array([[0.1, 0.1], [0.15, 0.1], [0.1, 0.15]])
    image = np.asarray(
        render(
            coords, np.ones((1, 3)), resolution=R, method="gaussian", max_distance=9.0
        )
    )
    np.testing.assert_allclose(image, 1.0, rtol=1e-6)


@pytest.mark.parametrize("method", ["linear", "nearest", "gaussian"])
def test_disk_shape_masks_outside_circle(method):
    rng = np.random.default_rng(7)
    coords = rng.random((30, 2))
    image = np.asarray(
        render(
            coords,
            rng.standard_normal((2, 30)),
            resolution=R,
            method=method,
            shape="disk",
        )  # fmt: skip
    )[0]
    outside = (np.linalg.norm(pixel_centers(R) - 0.5, axis=1) > 0.5).reshape(R, R)
    assert np.isnan(image[outside]).all()
    assert np.isfinite(image[~outside]).any()


def test_disk_placement():
    inside = np.array([[0.5, 0.5], [0.6, 0.7], [0.3, 0.4]])
    np.testing.assert_allclose(place_in_shape(inside, "disk"), inside)
    square = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [1.0, 0.5]])
    placed = place_in_shape(square, "disk")
    radii = np.linalg.norm(placed - 0.5, axis=1)
    np.testing.assert_allclose(radii.max(), 0.5)
    # one common factor: directions and ratios kept
    np.testing.assert_allclose(placed - 0.5, (square - 0.5) * (0.5 / np.sqrt(0.5)))


@pytest.mark.parametrize("shape", ["square", "disk"])
def test_nearest_neuron_matches_render_mask(shape):
    rng = np.random.default_rng(8)
    coords = rng.random((30, 2)).astype(np.float32)
    ids = nearest_neuron(coords, resolution=R, shape=shape)
    image = np.asarray(render(coords, np.ones((2, 30)), resolution=R, shape=shape))[0]
    assert ids.shape == (R, R) and ids.dtype == np.int32
    np.testing.assert_array_equal(ids == -1, np.isnan(image))
    dist = brute_nearest(place_in_shape(coords, shape), R)
    flat = ids.ravel()
    drawn = flat >= 0
    np.testing.assert_allclose(
        dist[drawn, flat[drawn]], dist[drawn].min(axis=1), atol=1e-6
    )


def test_bad_inputs_raise_before_compute():
    coords = np.random.default_rng(9).random((10, 2))
    with pytest.raises(ValueError, match="n_neurons=10"):
        render(coords, np.ones((2, 9)))
    with pytest.raises(ValueError, match="non-finite"):
        render(coords, np.full((2, 10), np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        apply_plan(render_plan(coords, resolution=8), np.full((1, 10), np.inf))
    with pytest.raises(ValueError, match=">= 2"):
        render(coords, np.ones((1, 10)), resolution=1)
    with pytest.raises(ValueError, match="int"):
        render(coords, np.ones((1, 10)), resolution=8.5)
    with pytest.raises(ValueError, match="GiB"):
        render(coords, np.ones((1, 10)), resolution=100_000)
    with pytest.raises(ValueError, match="GiB"):
        render(coords, np.ones((5000, 10)), resolution=512)
    with pytest.raises(ValueError, match=r"\['linear', 'nearest', 'gaussian'\]"):
        render(coords, np.ones((1, 10)), method="cubic")
    with pytest.raises(ValueError, match=r"\['square', 'disk'\]"):
        render_plan(coords, shape="circle")
    with pytest.raises(ValueError, match="coords"):
        render(np.ones((10, 3)), np.ones((1, 10)))
    with pytest.raises(ValueError, match="coords"):
        render(np.full((10, 2), np.nan), np.ones((1, 10)))
    with pytest.raises(ValueError, match="max_distance"):
        render_plan(coords, method="nearest", max_distance=0.0)
