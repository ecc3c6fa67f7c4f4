import jax
import jax.numpy as jnp
import numpy as np
import pytest

# One option set for most tests, so they share one compilation.
from cluster_data import assert_tiny_inputs_ok, clusters, neighbour_purity
from sklearn.manifold import TSNE, trustworthiness
from sklearn.manifold._t_sne import _joint_probabilities
from sklearn.manifold._utils import _binary_search_perplexity

from topojax.layout import METHODS
from topojax.layout.tsne import (
    _dense_gradient,
    _sparse_gradient,
    _tsne_core,
    conditional_affinities,
    dense_affinities,
    sparse_affinities,
    tsne_layout,
)

OPTIONS = dict(perplexity=10.0, trajectory_every=250)


def run(x, key, **options):
    return tsne_layout(x, key=key, metric="euclidean", **(OPTIONS | options))


def test_registered():
    assert METHODS["tsne"] is tsne_layout


@jax.jit
def affinities(x, dist2, valid):
    """Dense P, sparse P over all n - 1 neighbours, conditional P for ``dist2``
    and both paths' gradients at a random layout, in one compilation."""
    dense = dense_affinities(x, jnp.float32(10.0), "euclidean")
    sparse = sparse_affinities(x, jnp.float32(10.0), "euclidean", x.shape[0] - 1, 16)
    conditional = conditional_affinities(dist2, valid, jnp.float32(5.0))
    y = jax.random.normal(jax.random.key(0), (x.shape[0], 2))
    gradients = (
        _dense_gradient(y, dense[0], 4.0),
        _sparse_gradient(y, sparse[0], 4.0, 16),  # blocks of 16 rows, padded
    )
    return dense, sparse, conditional, gradients


def test_cosine_affinities_with_dead_neurons_match_sklearn():
    # scikit-learn's convention: cosine distances enter unsquared, and a dead
    # (all-zero) neuron has no neighbours of its own (its conditional row is 0).
    x, _ = clusters(0)
    x = np.abs(x)
    x[[3, 17, 40]] = 0.0
    p, _ = jax.jit(dense_affinities, static_argnums=2)(x, jnp.float32(10.0), "cosine")
    from sklearn.metrics import pairwise_distances

    d = pairwise_distances(x + 1e-15, metric="cosine").astype(np.float32)
    reference = _joint_probabilities(d, 10.0, 0)
    iu = np.triu_indices(len(x), 1)
    np.testing.assert_allclose(np.asarray(p)[iu], reference, atol=1e-6)
    assert np.asarray(p)[[3, 17, 40]].max() < 1e-3 * np.asarray(p).max()


def random_distances():
    rng = np.random.default_rng(0)
    dist2 = rng.uniform(0.1, 5.0, size=(30, 12)).astype(np.float32)
    valid = np.ones((30, 12), bool)
    valid[:, -2:] = False  # padding entries get no mass
    return dist2, valid


def test_affinities_match_sklearn_and_sparse_equals_dense():
    x, _ = clusters(0)
    n = len(x)
    dense, sparse, _, gradients = affinities(x, *random_distances())
    (p, p_log_p), ((heads, tails, values), sparse_p_log_p) = dense, sparse
    p = np.asarray(p)
    # Per-neuron calibration and the joint P equal scikit-learn's.
    d2 = ((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1).astype(np.float32)
    reference = _joint_probabilities(d2, 10.0, 0)
    iu = np.triu_indices(n, 1)
    np.testing.assert_allclose(p[iu], reference, atol=1e-6)
    np.testing.assert_allclose(p, p.T, atol=1e-9)
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.diag(p), 0.0)
    np.testing.assert_allclose(p_log_p, np.sum(p[p > 0] * np.log(p[p > 0])), rtol=1e-4)
    # Each row of the conditional probabilities has perplexity 10.
    conditional = _binary_search_perplexity(
        d2[~np.eye(n, dtype=bool)].reshape(n, -1), 10.0, 0
    )
    entropy = -np.sum(conditional * np.log(np.maximum(conditional, 1e-30)), axis=1)
    np.testing.assert_allclose(np.exp(entropy), 10.0, rtol=1e-3)
    # The k-NN edge list with all n - 1 neighbours is the same P.
    scattered = np.zeros((n, n))
    np.add.at(scattered, (np.asarray(heads), np.asarray(tails)), np.asarray(values))
    np.testing.assert_allclose(scattered, p, atol=1e-7)
    np.testing.assert_allclose(sparse_p_log_p, p_log_p, rtol=1e-5)
    # And so are the exact gradient and KL of both paths (the blocked repulsion
    # is exact too); the dense one equals autodiff of the KL divergence.
    (dense_grad, dense_kl), (sparse_grad, sparse_kl) = gradients
    np.testing.assert_allclose(sparse_grad, dense_grad, atol=1e-7)
    np.testing.assert_allclose(sparse_kl, dense_kl, rtol=1e-5)
    y = jax.random.normal(jax.random.key(0), (n, 2))

    def kl(y):
        w = 1 / (1 + ((y[:, None] - y[None]) ** 2).sum(-1))
        q = jnp.where(jnp.eye(n, dtype=bool), 1.0, w / (w.sum() - n))
        return jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1) / q), 0))

    # The unexaggerated gradient is the gradient of the KL divergence.
    plain, autodiff = jax.jit(
        lambda y: (_dense_gradient(y, jnp.asarray(p), 1.0)[0], jax.grad(kl)(y))
    )(y)
    np.testing.assert_allclose(plain, autodiff, atol=1e-6)


def test_conditional_affinities_match_sklearn_binary_search():
    dist2, valid = random_distances()
    ours = np.asarray(affinities(clusters(0)[0], dist2, valid)[2])
    reference = _binary_search_perplexity(np.ascontiguousarray(dist2[:, :-2]), 5.0, 0)
    np.testing.assert_allclose(ours[:, :-2], reference, atol=1e-5)
    np.testing.assert_array_equal(ours[:, -2:], 0.0)


def test_recovers_clusters_and_matches_sklearn_kl(key):
    x, labels = clusters(2)
    layout = run(x, key, return_trajectory=True)
    coords = np.asarray(layout.coords)
    assert coords.shape == (45, 2) and coords.dtype == np.float32
    assert coords.min() >= 0 and coords.max() <= 1
    assert neighbour_purity(coords, labels) == 1.0
    assert trustworthiness(x, coords, n_neighbors=5) > 0.95
    # The loss curve: KL falls after the exaggeration phase and ends near
    # scikit-learn's exact t-SNE with the same settings.
    kl = np.asarray(layout.losses)
    assert kl.shape == (1000,) and np.isfinite(kl).all()
    assert kl[-1] < kl[250] < kl[0]
    reference = TSNE(
        perplexity=10.0, method="exact", init="pca", learning_rate="auto"
    ).fit(x)
    # (Both start from PCA without jitter; the starts differ slightly: ours is
    # the PCA of the features' metric, scikit-learn's of the raw features.)
    assert kl[-1] < 1.1 * reference.kl_divergence_
    # Frames before the first step, every 250 steps; the last is the result.
    assert layout.trajectory.shape == (5, 45, 2)
    np.testing.assert_allclose(layout.trajectory[-1], coords, atol=1e-6)


def test_sparse_path_recovers_clusters(key):
    x, labels = clusters(2)
    layout = run(x, key, exact=False, block_size=16)
    coords = np.asarray(layout.coords)
    assert neighbour_purity(coords, labels) == 1.0
    exact_kl = np.asarray(run(x, key, return_trajectory=True).losses)[-1]
    assert np.asarray(layout.losses)[-1] < 1.5 * exact_kl


def test_deterministic_keys_and_no_recompile():
    x, _ = clusters(3)
    first = run(x, jax.random.key(0), return_trajectory=True).coords
    size = _tsne_core._cache_size()
    np.testing.assert_array_equal(
        first, run(x, jax.random.key(0), return_trajectory=True).coords
    )
    # The PCA start is deterministic (as in scikit-learn): the key acts only
    # through the optional jitter, a traced value (no recompilation).
    np.testing.assert_array_equal(
        first, run(x, jax.random.key(1), return_trajectory=True).coords
    )
    jittered = run(x, jax.random.key(1), return_trajectory=True, jitter=0.01).coords
    assert not np.allclose(first, jittered, atol=1e-3)
    new_values, _ = clusters(4)
    run(new_values, jax.random.key(2), return_trajectory=True)
    assert _tsne_core._cache_size() == size


@pytest.mark.parametrize("n", [1, 5])
def test_tiny_dead_and_duplicate_inputs(n, key):
    # Same shapes and options as the contract test (which also runs n = 2, 3).
    assert_tiny_inputs_ok(tsne_layout, n, key, n_iter=30, exaggeration_iter=10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(perplexity=0.0), "perplexity"),
        (dict(n_iter=0), "n_iter"),
        (dict(n_iter=10, exaggeration_iter=20), "exaggeration_iter"),
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(jitter=-0.1), "jitter"),
        (dict(exact="yes"), "exact"),
        (dict(init=np.zeros((3, 2))), "init must have shape"),
        (dict(return_trajectory=True, trajectory_every=0), "trajectory_every"),
    ],
)
def test_bad_options_raise_before_compute(options, message, key):
    x = np.ones((6, 3), np.float32)
    size = _tsne_core._cache_size()
    with pytest.raises(ValueError, match=message):
        tsne_layout(x, key=key, **options)
    assert _tsne_core._cache_size() == size
