"""Spectral layout (Laplacian eigenmaps) of the neurons' affinity graph.

The two smoothest non-constant functions on the graph of feature neighbours
become the map's axes: with ``W = P + P^T`` the symmetrised perplexity
affinities of `topojax.layout.optimize.layout_affinities`, degrees ``d`` and
``A = D^{-1/2} W D^{-1/2}``, the coordinates are ``D^{-1/2} u_2, D^{-1/2} u_3``
for the eigenvectors ``u_2, u_3`` of ``A`` after the constant one (Belkin and
Niyogi 2003; the spectral initialisation of umap-learn). A weak uniform
"teleport" weight ``regularization * mean(d) / n`` between all pairs keeps the
graph connected (regularised spectral embedding) without an ``(n, n)`` matrix.

Unlike PCA, which projects the profiles linearly, this follows the manifold the
profiles lie on, so a sheet of neurons that is curved in feature space is laid
out flat instead of folded. It is `optimize`'s default start: on the synthetic
sheet layer (`bench/synthetic.py`, 1024 neurons) the maps of `optimize` from a
PCA start have blur AUC 0.010, from this start 0.006 at the same neighbour
recall, close to the 0.005 of a start from the true sheet positions.

Dead neurons (no direction under cosine/correlation: `base.live_rows`) have no
neighbours; they are left out of the graph and placed at the centroid.

Up to `DENSE_MAX` neurons the eigenvectors come from a dense SciPy ``eigh``
(`dense_spectral_coords`: milliseconds, where compiling would take about a second
per layer size); above it from LOBPCG
(`jax.experimental.sparse.linalg.lobpcg_standard`, started from the PCA
coordinates) on the sparse operator, memory ``O(n k)``: never an ``(n, n)``
matrix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.experimental.sparse.linalg import lobpcg_standard

from topojax.layout.base import Layout, check_features, live_rows, make_layout
from topojax.layout.objectives import Affinities
from topojax.layout.pca import pca_coords

# Dense eigendecomposition up to this many (live) neurons, LOBPCG above.
DENSE_MAX = 512
# LOBPCG runs a fixed number of iterations from the PCA coordinates (its own
# stopping rule, relative to n * float32 eps, stops far too early: the leading
# eigenvalues of a sheet-like graph are 1 - O(1/n) apart). On the synthetic
# sheet at 4096 neurons 30-100 iterations from PCA gave the same maps, from a
# random start 30 were not enough (blur AUC 0.026 vs 0.007 after `optimize`).
_LOBPCG_ITERATIONS = 50
_LOBPCG_TOL = 1e-12


def _graph_product(indices: jax.Array, weights: jax.Array, x: jax.Array) -> jax.Array:
    """``W x`` for ``W = P + P^T``, ``P`` the fixed-degree edge list; x ``(n, c)``."""
    n = indices.shape[0]
    forward = jnp.einsum("nm,nmc->nc", weights, x[indices])
    backward = jax.ops.segment_sum(
        (weights[..., None] * x[:, None, :]).reshape(-1, x.shape[1]),
        indices.reshape(-1),
        num_segments=n,
    )
    return forward + backward


@jax.jit
def spectral_coords(
    indices: jax.Array,
    weights: jax.Array,
    start: jax.Array,
    *,
    live: jax.Array | None = None,
    regularization: float | jax.Array = 1e-3,
) -> jax.Array:
    """The leading non-trivial eigenvectors of the normalised graph, by LOBPCG.

    Args:
        indices: ``(n, k)`` neighbour indices of the affinity edge list.
        weights: ``(n, k)`` non-negative edge weights.
        start: ``(n, 2)`` LOBPCG's starting block, e.g. the PCA coordinates.
        live: optional ``(n,)`` 1 for neurons in the graph, 0 for neurons
            left out (dead ones): their edges are dropped and they are
            placed at the centroid of the others.
        regularization: teleport weight, as a fraction of the mean degree
            spread over all ``n`` neurons.

    Returns:
        ``(n, 2)`` float32 coordinates ``D^{-1/2} [u_2, u_3]``.
    """
    n = indices.shape[0]
    live = jnp.ones((n,), weights.dtype) if live is None else live.astype(weights.dtype)
    weights = weights * live[:, None] * live[indices]
    n_live = jnp.maximum(jnp.sum(live), 1.0)
    degree = _graph_product(indices, weights, jnp.ones((n, 1), weights.dtype))[:, 0]
    teleport = regularization * jnp.sum(degree) / n_live
    # Left-out neurons are isolated: the operator below maps them to zero
    # (its smallest eigenvalue), and they are placed at the end.
    degree = jnp.where(live > 0, degree + teleport, 1.0)
    inv_sqrt = jax.lax.rsqrt(degree) * live
    # The eigenvector of eigenvalue 1 is known: project it out.
    trivial = jnp.sqrt(degree) * live
    trivial = trivial / jnp.linalg.norm(trivial)

    def operator(x):  # (I + A) / 2 on the complement of `trivial`, PSD
        x = x - trivial[:, None] * (trivial @ x)[None, :]
        y = inv_sqrt[:, None] * x
        walked = _graph_product(indices, weights, y) + teleport * live[:, None] * (
            jnp.sum(y, axis=0, keepdims=True) / n_live
        )
        out = 0.5 * live[:, None] * (x + inv_sqrt[:, None] * walked)
        return out - trivial[:, None] * (trivial @ out)[None, :]

    _, top, _ = lobpcg_standard(
        operator, start.astype(weights.dtype), m=_LOBPCG_ITERATIONS, tol=_LOBPCG_TOL
    )
    coords = inv_sqrt[:, None] * top
    centroid = jnp.sum(coords, axis=0) / n_live
    return jnp.where(live[:, None] > 0, coords, centroid[None, :]).astype(jnp.float32)


def spectral(
    features,
    *,
    key: jax.Array,
    metric: str = "cosine",
    perplexity: float = 15.0,
    regularization: float = 1e-3,
) -> Layout:
    """Lay out neurons by Laplacian eigenmaps of their feature-neighbour graph.

    Args:
        features: ``(n_neurons, n_features)`` profiles, one row per neuron.
        key: PRNG key (unused: the result is deterministic; LOBPCG above
            `DENSE_MAX` neurons starts from the PCA coordinates).
        metric: ``"cosine"``, ``"euclidean"`` or ``"correlation"``.
        perplexity: of the affinities (as `optimize`).
        regularization: uniform teleport weight keeping the graph connected,
            as a fraction of the mean degree.

    Returns:
        `Layout` named ``"spectral"``, coordinates in ``[0, 1]^2``; dead
        neurons at the centroid. Fewer than 4 live neurons: their PCA layout.

    Raises:
        ValueError: bad features, metric, perplexity or regularization.
    """
    from topojax.layout.optimize import layout_affinities  # imports this module

    features = check_features(features, metric=metric)
    if perplexity <= 0:
        raise ValueError(f"perplexity must be > 0; got {perplexity}")
    if not regularization > 0:
        raise ValueError(f"regularization must be > 0; got {regularization}")
    if int(jnp.sum(live_rows(features, metric))) < 4:
        return make_layout(pca_coords(features, metric), "spectral")
    affinities = layout_affinities(features, perplexity=perplexity, metric=metric)
    coords = spectral_start(features, affinities, metric, regularization=regularization)
    return make_layout(coords, "spectral")


def spectral_start(
    features: jax.Array,
    affinities: Affinities,
    metric: str,
    *,
    regularization: float = 1e-3,
) -> jax.Array:
    """`spectral_coords` of checked features and their affinities (optimize's start).

    Dead neurons are left out of the graph; with fewer than 4 live neurons the
    PCA coordinates are returned instead.

    Returns:
        ``(n_neurons, 2)`` float32, not rescaled.
    """
    live = live_rows(features, metric)
    start = pca_coords(features, metric)
    if int(jnp.sum(live)) < 4:
        return start
    if features.shape[0] <= DENSE_MAX:
        return jnp.asarray(
            dense_spectral_coords(
                np.asarray(affinities.indices),
                np.asarray(affinities.weights),
                np.asarray(live) > 0.5,
                regularization=regularization,
            )
        )
    return spectral_coords(
        affinities.indices,
        affinities.weights,
        start,
        live=live,
        regularization=regularization,
    )


def dense_spectral_coords(
    indices: np.ndarray,
    weights: np.ndarray,
    live: np.ndarray,
    *,
    regularization: float = 1e-3,
) -> np.ndarray:
    """`spectral_coords` exactly, by a dense SciPy ``eigh`` (small ``n``).

    NumPy, not JAX: below `DENSE_MAX` neurons the eigendecomposition takes
    milliseconds, while compiling it would take about a second per layer size.

    Args:
        indices: ``(n, k)`` neighbour indices of the affinity edge list.
        weights: ``(n, k)`` edge weights.
        live: ``(n,)`` bool, neurons in the graph (the others go to the centroid).
        regularization: teleport weight, as a fraction of the mean degree.

    Returns:
        ``(n, 2)`` float32.
    """
    n = indices.shape[0]
    joint = np.zeros((n, n))
    np.add.at(
        joint,
        (np.repeat(np.arange(n), indices.shape[1]), indices.ravel()),
        weights.ravel(),
    )
    graph = (joint + joint.T)[np.ix_(live, live)]
    teleport = regularization * graph.sum() / live.sum()
    graph = graph + teleport / live.sum()
    inv_sqrt = 1.0 / np.sqrt(graph.sum(axis=1))
    normalised = graph * inv_sqrt[:, None] * inv_sqrt[None, :]
    m = normalised.shape[0]
    _, vectors = scipy.linalg.eigh(normalised, subset_by_index=[m - 3, m - 2])
    coords = np.empty((n, 2))
    coords[live] = vectors[:, ::-1] * inv_sqrt[:, None]
    coords[~live] = coords[live].mean(axis=0)
    return coords.astype(np.float32)
