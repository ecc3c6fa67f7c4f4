import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.csgraph
from scipy.spatial.distance import cdist, pdist, squareform

from topojax.layout import METHODS, graph_layout
from topojax.layout.graph import (
    _force_layout,
    connect_components,
    distance_threshold,
    fruchterman_reingold,
    threshold_graph,
)
from topojax.metrics import knn_recall


def blobs(seed: int = 0, per_blob: int = 12, n_outliers: int = 3) -> np.ndarray:
    """Three tight blobs plus a few scattered outliers (several components)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 5)) * 4
    points = [c + 0.3 * rng.normal(size=(per_blob, 5)) for c in centres]
    points.append(rng.normal(size=(n_outliers, 5)) * 6)
    return np.concatenate(points).astype(np.float32)


def no_extra(n: int):
    return jnp.zeros((n, 2), jnp.int32), jnp.zeros(n, bool)


def test_registered():
    assert METHODS["graph"] is graph_layout


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "correlation"])
def test_exact_threshold_is_numpy_percentile(metric):
    x = blobs()
    expected = np.percentile(pdist(x.astype(np.float64), metric), 7.5)
    got = distance_threshold(jnp.asarray(x), jax.random.key(0), 7.5, metric=metric)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5, atol=1e-6)


def test_sampled_threshold_is_close():
    x = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    exact = np.percentile(pdist(x, "cosine"), 7.5)
    sampled = distance_threshold(
        jnp.asarray(x), jax.random.key(0), 7.5, n_sample_pairs=20_000
    )
    assert abs(float(sampled) - exact) < 0.01
    other = distance_threshold(
        jnp.asarray(x), jax.random.key(1), 7.5, n_sample_pairs=20_000
    )
    assert float(other) != float(sampled)  # really sampled, with the key


def paper_graph(x: np.ndarray, metric: str = "cosine"):
    """The paper's construction on the full distance matrix."""
    dist = squareform(pdist(x.astype(np.float64), metric))
    threshold = np.percentile(pdist(x.astype(np.float64), metric), 7.5)
    adjacency = (dist < threshold) & ~np.eye(len(x), dtype=bool)
    n_comp, labels = scipy.sparse.csgraph.connected_components(
        scipy.sparse.csr_matrix(adjacency), directed=False
    )
    largest = np.argmax(np.bincount(labels))
    joins = set()
    for comp in range(n_comp):
        if comp == largest:
            continue
        members = np.flatnonzero(labels == comp)
        inside = np.flatnonzero(labels == largest)
        sub = cdist(x[members], x[inside], metric)
        i, j = np.unravel_index(np.argmin(sub), sub.shape)
        joins.add((members[i], inside[j]))
    return adjacency, joins, n_comp


def test_graph_and_joins_match_the_papers_construction(key):
    x = blobs()
    adjacency, joins, n_comp = paper_graph(x)
    assert n_comp > 2  # the test data really has several components
    neighbours, mask = threshold_graph(jnp.asarray(x), key)
    neighbours, mask = np.asarray(neighbours), np.asarray(mask)
    assert neighbours.shape == (len(x), len(x) - 1)  # not truncated: exact
    got = np.zeros_like(adjacency)
    got[np.repeat(np.arange(len(x)), neighbours.shape[1]), neighbours.ravel()] = (
        mask.ravel()
    )
    np.testing.assert_array_equal(got, adjacency)
    connectors = connect_components(jnp.asarray(x), neighbours, mask, "cosine")
    assert {tuple(edge) for edge in connectors.tolist()} == joins


def test_max_degree_truncates_to_nearest(key):
    x = blobs(per_blob=20)
    neighbours, mask = threshold_graph(jnp.asarray(x), key, max_degree=4)
    assert neighbours.shape == (len(x), 4)
    full, full_mask = threshold_graph(jnp.asarray(x), key)
    np.testing.assert_array_equal(neighbours, np.asarray(full)[:, :4])
    np.testing.assert_array_equal(mask, np.asarray(full_mask)[:, :4])


@pytest.mark.parametrize("n_iter", [1, 5])
def test_forces_match_networkx(n_iter):
    layout_module = pytest.importorskip("networkx.drawing.layout")
    x = blobs(2)
    n = len(x)
    neighbours, mask = threshold_graph(jnp.asarray(x), jax.random.key(0))
    adjacency = np.zeros((n, n))
    adjacency[np.repeat(np.arange(n), n - 1), np.asarray(neighbours).ravel()] = (
        np.asarray(mask).ravel()
    )
    # One extra (connector) edge, added in both directions.
    extra = jnp.zeros((n, 2), jnp.int32).at[0].set(jnp.array([0, n - 1]))
    extra_mask = jnp.zeros(n, bool).at[0].set(True)
    adjacency[0, n - 1] = adjacency[n - 1, 0] = 1.0
    init = np.random.default_rng(3).random((n, 2)).astype(np.float32)
    expected = layout_module._fruchterman_reingold(
        adjacency, pos=init.astype(np.float64), iterations=n_iter
    )
    got = fruchterman_reingold(
        jnp.asarray(init),
        neighbours,
        mask,
        extra,
        extra_mask,
        n_iter=n_iter,
        block_size=8,
    )
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_blocks_do_not_change_forces():
    x = blobs(3)
    n = len(x)
    neighbours, mask = threshold_graph(jnp.asarray(x), jax.random.key(0))
    init = jax.random.uniform(jax.random.key(1), (n, 2))
    one = fruchterman_reingold(
        init, neighbours, mask, *no_extra(n), n_iter=3, block_size=n
    )
    many = fruchterman_reingold(
        init, neighbours, mask, *no_extra(n), n_iter=3, block_size=5
    )
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_keeps_clusters_together(key):
    x = blobs(4, per_blob=15, n_outliers=0)
    layout = graph_layout(x, key=key)
    labels = np.repeat(np.arange(3), 15)
    coords = np.asarray(layout.coords)
    nearest = np.argsort(squareform(pdist(coords)) + np.eye(45) * 9, axis=1)[:, :5]
    purity = (labels[nearest] == labels[:, None]).mean()
    assert purity > 0.8  # a random layout scores about 0.3
    assert float(knn_recall(x, coords, 5)) > 0.4


def test_component_count_does_not_recompile(key):
    # Same shape, different numbers of components: the layout is not recompiled.
    graph_layout(blobs(5), key=key, n_iter=3)
    before = _force_layout._cache_size(), threshold_graph._cache_size()
    connected = np.random.default_rng(6).normal(size=blobs(5).shape).astype(np.float32)
    graph_layout(connected, key=key, n_iter=3)
    assert (_force_layout._cache_size(), threshold_graph._cache_size()) == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_iter": 0}, "n_iter"),
        ({"max_degree": 0}, "max_degree"),
        ({"percentile": 120.0}, "percentile"),
        ({"block_size": -1}, "block_size"),
    ],
)
def test_bad_options_raise(options, message, key):
    with pytest.raises(ValueError, match=message):
        graph_layout(np.ones((4, 3), np.float32), key=key, **options)
