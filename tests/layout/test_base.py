import jax.numpy as jnp
import numpy as np

from topojax.layout.base import flag_dead, knn, pairwise_distances


def test_flag_dead_makes_dead_neurons_mutual_neighbours_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5)).astype(np.float32)
    dead = [2, 7, 9]
    x[dead] = 0.0
    flagged, metric = flag_dead(jnp.asarray(x), "cosine")
    assert metric == "cosine"
    before = np.asarray(pairwise_distances(x, x, "cosine"))
    after = np.asarray(pairwise_distances(flagged, flagged, "cosine"))
    live = np.setdiff1d(np.arange(12), dead)
    # Live-live and live-dead distances are unchanged; dead-dead become 0.
    np.testing.assert_allclose(
        after[np.ix_(live, live)], before[np.ix_(live, live)], atol=1e-6
    )
    np.testing.assert_allclose(after[np.ix_(live, dead)], 1.0, atol=1e-6)
    np.testing.assert_allclose(after[np.ix_(dead, dead)], 0.0, atol=1e-6)
    neighbours, _ = knn(flagged, 2, metric)
    for d in dead:
        assert set(np.asarray(neighbours[d])) == set(dead) - {d}


def test_flag_dead_keeps_euclidean_features():
    x = jnp.zeros((3, 2))
    flagged, metric = flag_dead(x, "euclidean")
    assert metric == "euclidean" and flagged is x
