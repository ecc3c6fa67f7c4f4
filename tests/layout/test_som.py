import jax
import jax.numpy as jnp
import numpy as np
import pytest

from topojax.layout import METHODS, som_layout
from topojax.layout.som import (
    neighbourhood_radius,
    som_grid_side,
    spread_on_nodes,
    train_som,
    winning_nodes,
)
from topojax.metrics import trustworthiness

SIDE, N, D = 6, 30, 4


def small_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D)).astype(np.float32)
    weights = x[rng.integers(0, N, SIDE * SIDE)]
    order = rng.permutation(np.arange(10 * N) % N)
    return x, weights, order


def test_registered():
    assert METHODS["som"] is som_layout


@pytest.mark.parametrize(("n", "side"), [(1, 2), (3, 2), (4, 3), (15, 4), (128, 12)])
def test_grid_side_is_the_papers(n, side):
    assert som_grid_side(n) == side


def test_matches_minisom_update_loop():
    minisom = pytest.importorskip("minisom")
    x, weights, order = small_problem()
    reference = minisom.MiniSom(SIDE, SIDE, D, sigma=1.0, learning_rate=0.5)
    reference._weights = weights.reshape(SIDE, SIDE, D).astype(np.float64)
    for t, row in enumerate(order):
        reference.update(x[row], reference.winner(x[row]), t, len(order))
    trained = train_som(
        jnp.asarray(x), jnp.asarray(weights), jnp.asarray(order), side=SIDE, radius=6
    )
    np.testing.assert_allclose(
        np.asarray(trained).reshape(SIDE, SIDE, D), reference._weights, atol=1e-5
    )


def test_window_equals_full_grid_update():
    x, weights, order = (jnp.asarray(a) for a in small_problem(1))
    side = 12
    weights = jnp.tile(weights, (4, 1))  # 144 nodes
    windowed = train_som(x, weights, order, side=side, radius=neighbourhood_radius(1.0))
    full = train_som(x, weights, order, side=side, radius=side)
    assert neighbourhood_radius(1.0) == 6
    np.testing.assert_allclose(windowed, full, atol=1e-6)
    # A too-small window really changes the result: the test can fail.
    narrow = train_som(x, weights, order, side=side, radius=1)
    assert np.abs(np.asarray(narrow) - np.asarray(full)).max() > 1e-3


def test_winning_nodes_blocked_equals_brute_force():
    x, weights, _ = small_problem(2)
    brute = np.argmin(((x[:, None, :] - weights[None]) ** 2).sum(-1), axis=1)
    got = winning_nodes(jnp.asarray(x), jnp.asarray(weights), block_size=7)
    np.testing.assert_array_equal(got, brute)


def test_shared_nodes_are_spread_on_a_circle():
    winners = jnp.array([0, 0, 0, 5, 8, 8])
    coords = np.asarray(spread_on_nodes(winners, jax.random.key(3), side=3))
    # Node 5 is (1, 2); a neuron alone on its node sits exactly on it.
    np.testing.assert_allclose(coords[3], [1.0, 2.0])
    for members, centre in (([0, 1, 2], [0.0, 0.0]), ([4, 5], [2.0, 2.0])):
        offsets = coords[members] - np.array(centre)
        np.testing.assert_allclose(np.linalg.norm(offsets, axis=1), 0.2, atol=1e-6)
        angles = np.sort(np.arctan2(offsets[:, 1], offsets[:, 0]))
        gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
        np.testing.assert_allclose(gaps, 2 * np.pi / len(members), atol=1e-5)


def test_recovers_a_sheet(key):
    # Neurons on a 2-D sheet seen through a random linear map into 6-D.
    rng = np.random.default_rng(4)
    sheet = rng.random((64, 2)).astype(np.float32)
    features = sheet @ rng.normal(size=(2, 6)).astype(np.float32)
    layout = som_layout(features, key=key, metric="euclidean")
    random_coords = rng.random((64, 2)).astype(np.float32)
    score = float(trustworthiness(sheet, layout.coords, 5, metric="euclidean"))
    baseline = float(trustworthiness(sheet, random_coords, 5, metric="euclidean"))
    assert score > 0.85
    assert score > baseline + 0.25


def test_no_recompile_on_new_values():
    x, weights, order = small_problem(5)
    train_som(
        jnp.asarray(x), jnp.asarray(weights), jnp.asarray(order), side=SIDE, radius=6
    )
    before = train_som._cache_size()
    x2, weights2, order2 = small_problem(6)
    train_som(
        jnp.asarray(x2), jnp.asarray(weights2), jnp.asarray(order2), side=SIDE, radius=6
    )
    assert train_som._cache_size() == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_iter": 0}, "n_iter"),
        ({"side": 0}, "side"),
        ({"sigma": 0.0}, "sigma"),
        ({"learning_rate": -1.0}, "learning_rate"),
    ],
)
def test_bad_options_raise(options, message, key):
    with pytest.raises(ValueError, match=message):
        som_layout(np.ones((4, 3), np.float32), key=key, **options)
