import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cluster_data import assert_tiny_inputs_ok, clusters, neighbour_purity
from sklearn.manifold import trustworthiness

from topojax.layout import METHODS
from topojax.layout.umap import (
    _umap_core,
    find_ab_params,
    fit_ab_params,
    fuzzy_graph,
    smooth_knn_dist,
    umap_layout,
)

OPTIONS = dict(trajectory_every=100)  # default 500 epochs for small inputs


def run(x, key, **options):
    return umap_layout(x, key=key, metric="euclidean", **(OPTIONS | options))


def test_registered():
    assert METHODS["umap"] is umap_layout


def test_ab_params_match_umap_learn():
    a, b = find_ab_params(1.0, 0.1)
    np.testing.assert_allclose((a, b), (1.577, 0.895), atol=1e-3)
    np.testing.assert_allclose(fit_ab_params(1.0, 0.1), (a, b), rtol=1e-6)
    # umap-learn's find_ab_params(1.0, 0.5).
    np.testing.assert_allclose(find_ab_params(1.0, 0.5), (0.58303, 1.33417), rtol=1e-4)


def test_smooth_knn_dist_calibrates_each_row():
    rng = np.random.default_rng(0)
    distances = np.sort(rng.uniform(0.5, 3.0, size=(20, 14)), axis=1)
    distances[0, :3] = 0.0  # duplicates of neuron 0: rho is the first nonzero
    distances[1] = 0.0  # all neighbours identical
    distances = distances.astype(np.float32)
    rho, sigma = (np.asarray(a) for a in jax.jit(smooth_knn_dist)(distances))
    assert rho[0] == distances[0, 3] and rho[1] == 0.0
    np.testing.assert_array_equal(rho[2:], distances[2:, 0])
    excess = np.maximum(distances - rho[:, None], 0.0)
    mass = np.exp(-excess / sigma[:, None]).sum(axis=1)
    np.testing.assert_allclose(mass[2:], np.log2(15), rtol=1e-4)
    # Rows 0 and 1 have more neighbours at distance <= rho (each counting 1)
    # than the target mass; sigma then shrinks to its floor, as in umap-learn.
    assert mass[0] == pytest.approx(4.0) and mass[1] == pytest.approx(14.0)
    assert np.isfinite(sigma).all() and (sigma >= 0).all()


def test_fuzzy_graph_is_the_fuzzy_union():
    x, _ = clusters(0)
    n, k, n_epochs = len(x), 6, 500
    heads, tails, weights = (
        np.asarray(a)
        for a in jax.jit(fuzzy_graph, static_argnums=(1, 2, 3))(
            jnp.asarray(x), k, "euclidean", n_epochs
        )
    )
    assert heads.shape == tails.shape == weights.shape == (2 * n * k,)
    graph = np.zeros((n, n))
    np.add.at(graph, (heads, tails), weights)
    # NumPy reference: directed memberships from exact neighbours, then
    # a + b - a * b, then pruning below max / n_epochs.
    d = np.sqrt(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    neighbours = np.argsort(d, axis=1)[:, :k]
    distances = np.take_along_axis(d, neighbours, axis=1).astype(np.float32)
    rho, sigma = (np.asarray(a) for a in jax.jit(smooth_knn_dist)(distances))
    directed = np.zeros((n, n))
    strength = np.exp(-np.maximum(distances - rho[:, None], 0) / sigma[:, None])
    np.put_along_axis(directed, neighbours, strength, axis=1)
    union = directed + directed.T - directed * directed.T
    union[union < union.max() / n_epochs] = 0.0
    np.testing.assert_allclose(graph, union, atol=1e-4)
    np.testing.assert_allclose(graph, graph.T, atol=1e-6)
    assert graph.max() == pytest.approx(1.0)


def test_recovers_clusters(key):
    x, labels = clusters(1)
    layout = run(x, key, return_trajectory=True)
    coords = np.asarray(layout.coords)
    assert coords.shape == (45, 2) and coords.dtype == np.float32
    assert coords.min() >= 0 and coords.max() <= 1
    assert neighbour_purity(coords, labels) == 1.0
    assert trustworthiness(x, coords, n_neighbors=5) > 0.9  # umap-learn: 0.95
    # Frames before the first epoch and every 100 epochs; the last is the result.
    assert layout.trajectory.shape == (6, 45, 2)
    np.testing.assert_allclose(layout.trajectory[-1], coords, atol=1e-6)


def test_deterministic_keys_and_no_recompile():
    x, _ = clusters(2)
    first = run(x, jax.random.key(0), return_trajectory=True).coords
    size = _umap_core._cache_size()
    again = run(x, jax.random.key(0), return_trajectory=True).coords
    np.testing.assert_array_equal(first, again)
    other_key = run(x, jax.random.key(1), return_trajectory=True).coords
    assert not np.allclose(first, other_key, atol=1e-3)
    new_values, _ = clusters(3)
    run(new_values, jax.random.key(2), return_trajectory=True)
    assert _umap_core._cache_size() == size


@pytest.mark.parametrize("n", [1, 5])
def test_tiny_dead_and_duplicate_inputs(n, key):
    # Same shapes and options as the contract test (which also runs n = 2, 3).
    assert_tiny_inputs_ok(umap_layout, n, key, n_epochs=20)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(n_neighbors=1), "n_neighbors"),
        (dict(n_neighbors=4.5), "n_neighbors"),
        (dict(min_dist=-0.1), "min_dist"),
        (dict(min_dist=2.0), "min_dist"),
        (dict(n_epochs=0), "n_epochs"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(negative_sample_rate=-1), "negative_sample_rate"),
        (dict(init=np.zeros((6, 3))), "init must have shape"),
        (dict(init=np.full((6, 2), np.nan)), "init must contain finite"),
    ],
)
def test_bad_options_raise_before_compute(options, message, key):
    size = _umap_core._cache_size()
    with pytest.raises(ValueError, match=message):
        umap_layout(np.ones((6, 3), np.float32), key=key, **options)
    assert _umap_core._cache_size() == size
