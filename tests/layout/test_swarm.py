import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cluster_data import assert_tiny_inputs_ok
from scipy.spatial.distance import pdist, squareform

from topojax.layout import METHODS, get_method
from topojax.layout.swarm import (
    _swarm_core,
    global_force,
    local_force,
    schedule,
    swarm_layout,
)

N_REFERENCE, N_STEPS = 24, 30


def features(seed: int, n: int = N_REFERENCE, d: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def reference_swarm(x, start, n_steps, a_g, b_g, c_g=2.0, stop=None):
    """The digest's force law with dense (N, N, 2) arrays in float64.

    ``stop`` ends the run after that many of the ``n_steps`` steps.
    """
    distance = squareform(pdist(x.astype(np.float64), "cosine"))
    with np.errstate(divide="ignore", invalid="ignore"):
        glob = a_g * (1 - (distance / distance.max()) ** 3) - b_g * np.exp(
            -distance / c_g
        )
    glob[~np.isfinite(glob)] = 0.0
    positions = np.asarray(start, np.float64)
    for s in np.linspace(-3, 6, n_steps)[:stop]:
        w_loc, w_glob = (np.tanh(s) + 1) / 2, (1 - np.tanh(s)) / 2
        diff = positions[None, :, :] - positions[:, None, :]
        d = np.maximum(np.sqrt((diff**2).sum(-1)), 0.01)
        f_loc = 1.5 / (1 + d) ** 3 - 15 * np.exp(-d / 2)
        force = (w_loc * f_loc + w_glob * glob) / 2
        positions = positions + (force[:, :, None] * diff).sum(1) / len(x)
    return positions


def rescale_keep_aspect(coords):
    lo, hi = coords.min(0), coords.max(0)
    span = (hi - lo).max()
    return (coords - lo) / span + (1 - (hi - lo) / span) / 2


def nn_distances(coords: np.ndarray) -> np.ndarray:
    d = np.sqrt(((coords[:, None] - coords[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def test_registered_and_chains():
    assert METHODS["swarm"] is swarm_layout
    assert get_method("umap+swarm") is not None


@jax.jit
def force_law():
    """Every force value the tests need, in one compilation."""
    local = local_force(jnp.array([0.0, 0.01, 1.0, 5.0, 10.0, 23.8, 24.0]))
    # The last entry has Dmax = 0 (all profiles equal): 0/0 is not finite.
    glob = global_force(
        jnp.array([0.0, 1.0, 2.0, 0.0]), jnp.array([2.0, 2.0, 2.0, 0.0]), 1.5, 0.5, 2.0
    )
    return local, glob, schedule(jnp.arange(1000), 1000)


def test_force_law_values_from_the_digest():
    local, glob, (w_loc, w_glob) = jax.tree.map(np.asarray, force_law())
    np.testing.assert_allclose(
        local[:5], [-13.47, -13.47, -8.91, -1.224, -0.0999], atol=5e-3
    )
    assert local[5] < 0 < local[6]  # repulsive for every d < 23.9
    d = np.array([0.0, 1.0, 2.0])
    expected = 1.5 * (1 - (d / 2) ** 3) - 0.5 * np.exp(-d / 2)
    np.testing.assert_allclose(glob[:3], expected, rtol=1e-6)
    assert glob[3] == 0.0
    np.testing.assert_allclose(w_loc + w_glob, 1.0, rtol=1e-6)
    np.testing.assert_allclose([w_loc[0], w_glob[0]], [0.0025, 0.9975], atol=1e-4)
    assert 330 <= np.argmin(np.abs(w_loc - w_glob)) <= 335


def test_matches_dense_float64_reference(key):
    x = features(0)
    layout = swarm_layout(x, key=key, n_steps=N_STEPS)
    start = jax.random.uniform(key, (N_REFERENCE, 2))
    expected = reference_swarm(x, np.asarray(start), N_STEPS, 1.5, 0.5)
    np.testing.assert_allclose(layout.coords, rescale_keep_aspect(expected), atol=1e-4)


def test_contraction_of_the_plain_run_stays_resolved(key):
    # With T = 1000 the swarm contracts by ~1e-10 in 50 steps: below float32
    # resolution of positions near 0.5, but kept by the centred, rescaled state.
    x = features(6, n=40)
    layout = swarm_layout(x, key=key, return_trajectory=True, trajectory_every=50)
    start = np.asarray(jax.random.uniform(key, (40, 2)))
    expected = reference_swarm(x, start, 1000, 1.5, 0.5, stop=50)
    assert np.ptp(expected, axis=0).max() < 1e-8
    np.testing.assert_allclose(
        layout.trajectory[1], rescale_keep_aspect(expected), atol=1e-4
    )


def test_blocked_and_on_the_fly_global_force_are_the_same(key):
    x = features(1)
    dense = swarm_layout(x, key=key, n_steps=N_STEPS).coords
    # Row blocks of 7 (with padding) and the global force recomputed per block.
    blocked = swarm_layout(x, key=key, n_steps=N_STEPS, block_size=7, dense_max=0)
    np.testing.assert_allclose(blocked.coords, dense, atol=1e-5)


def test_refinement_spreads_a_clustered_layout_into_a_disk(key):
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 30)
    centres = np.array([[0.2, 0.2], [0.8, 0.25], [0.3, 0.8], [0.75, 0.7]])
    init = centres[labels] + 0.01 * rng.normal(size=(120, 2))
    init[1] = init[0]  # an exact overlap
    x = rng.normal(size=(120, 4)).astype(np.float32)
    layout = swarm_layout(x, key=key, init=init, return_trajectory=True)
    coords = np.asarray(layout.coords)
    assert coords.min() >= 0 and coords.max() <= 1
    start = rescale_keep_aspect(init)
    # Overlaps removed: the smallest nearest-neighbour distance rises ~100x.
    assert nn_distances(coords).min() > 20 * nn_distances(start).max() / 10
    assert nn_distances(coords).min() > 0.03
    assert np.median(nn_distances(coords)) > 3 * np.median(nn_distances(start))
    # A roughly uniform disk of radius 0.5: r^2 quantiles near 0.25/0.5/0.75.
    centre = coords.mean(0)
    r2 = ((coords - centre) ** 2).sum(1) / 0.25
    np.testing.assert_allclose(
        np.quantile(r2, [0.25, 0.5, 0.75]), [0.25, 0.5, 0.75], atol=0.12
    )
    # Clusters stay mostly together: nearest neighbours share the label.
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[np.argmin(d, axis=1)] == labels).mean() > 0.8
    # 1 + 1000 / 10 frames, the last one the result.
    assert layout.trajectory.shape == (101, 120, 2)
    np.testing.assert_allclose(layout.trajectory[-1], coords, atol=1e-6)


def test_trajectory_with_a_partial_last_chunk(key):
    x = features(7)
    layout = swarm_layout(
        x, key=key, n_steps=N_STEPS, return_trajectory=True, trajectory_every=7
    )
    # The start, after steps 7, 14, 21, 28, and the end (step 30).
    assert layout.trajectory.shape == (6, N_REFERENCE, 2)
    start = np.asarray(jax.random.uniform(key, (N_REFERENCE, 2)))
    np.testing.assert_allclose(
        layout.trajectory[0], rescale_keep_aspect(start), atol=1e-6
    )
    np.testing.assert_allclose(layout.trajectory[-1], layout.coords, atol=1e-6)
    assert not np.allclose(layout.trajectory[-2], layout.coords, atol=1e-3)


def test_refinement_matches_reference(key):
    x = features(3)
    init = np.random.default_rng(3).uniform(size=(N_REFERENCE, 2))
    layout = swarm_layout(x, key=key, init=init, n_steps=N_STEPS, jitter=0.0)
    # The start is min-max scaled per axis first, as the paper does.
    start = (init - init.min(0)) / (init.max(0) - init.min(0))
    expected = reference_swarm(x, start, N_STEPS, 0.0, 0.0)
    np.testing.assert_allclose(layout.coords, rescale_keep_aspect(expected), atol=1e-4)


def test_deterministic_keys_and_no_recompile():
    x = features(4)
    first = swarm_layout(x, key=jax.random.key(0), n_steps=N_STEPS).coords
    size = _swarm_core._cache_size()
    again = swarm_layout(x, key=jax.random.key(0), n_steps=N_STEPS).coords
    np.testing.assert_array_equal(first, again)
    other = swarm_layout(x, key=jax.random.key(1), n_steps=N_STEPS).coords
    assert not np.allclose(first, other, atol=1e-3)
    swarm_layout(features(5), key=jax.random.key(2), n_steps=N_STEPS)
    assert _swarm_core._cache_size() == size


@pytest.mark.parametrize("n", [1, 5])
def test_tiny_dead_and_duplicate_inputs(n, key):
    # Same shapes and options as the contract test (which also runs n = 2, 3).
    assert_tiny_inputs_ok(swarm_layout, n, key, n_steps=20)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(n_steps=0), "n_steps"),
        (dict(a_g=-1.0), "a_g"),
        (dict(c_g=0.0), "c_g"),
        (dict(jitter=np.inf), "jitter"),
        (dict(block_size=0), "block_size"),
        (dict(init=np.zeros((5, 2))), "init must have shape"),
    ],
)
def test_bad_options_raise_before_compute(options, message, key):
    size = _swarm_core._cache_size()
    with pytest.raises(ValueError, match=message):
        swarm_layout(np.ones((6, 3), np.float32), key=key, **options)
    assert _swarm_core._cache_size() == size
