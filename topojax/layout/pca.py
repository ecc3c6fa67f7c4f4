"""Principal component analysis layout: the two leading principal axes."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from topojax.layout.base import Layout, check_features, make_layout, prepare


def principal_axes(features: jax.Array, metric: str) -> jax.Array:
    """Project prepared ``(n, d)`` features on their two leading principal axes.

    Uses `jnp.linalg.eigh` of the smaller of the ``(d, d)`` covariance and the
    ``(n, n)`` Gram matrix (on CPU far faster than an SVD of the data). The sign of
    each axis is fixed (largest-magnitude loading positive) so the result is
    deterministic. Axes without variance give zeros.

    Args:
        features: ``(n, d)``.
        metric: one of `base.METRICS` (cosine and correlation normalise rows).

    Returns:
        ``(n, 2)`` unscaled coordinates.
    """
    x, _ = prepare(features, metric)
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[1] < 2:
        x = jnp.pad(x, ((0, 0), (0, 2 - x.shape[1])))
    n, d = x.shape
    if d <= n:
        _, vectors = jnp.linalg.eigh(x.T @ x)
        axes = vectors[:, ::-1][:, :2]
    else:
        values, vectors = jnp.linalg.eigh(x @ x.T)
        values, vectors = values[::-1][:2], vectors[:, ::-1][:, :2]
        axes = x.T @ vectors / jnp.sqrt(jnp.maximum(values, 1e-30))[None, :]
    rows = jnp.argmax(jnp.abs(axes), axis=0)
    signs = jnp.sign(axes[rows, jnp.arange(2)])
    return x @ (axes * jnp.where(signs == 0, 1.0, signs)[None, :])


pca_coords = jax.jit(principal_axes, static_argnames=("metric",))


def pca_layout(features, *, key: jax.Array, metric: str = "cosine") -> Layout:
    """PCA layout of neuron profiles (deterministic; the key is unused).

    Args:
        features: ``(n_neurons, n_features)``.
        key: PRNG key (accepted for the common contract).
        metric: ``"cosine"`` and ``"correlation"`` normalise rows first.

    Returns:
        `Layout` with ``coords`` ``(n_neurons, 2)`` in ``[0, 1]^2``.
    """
    del key
    features = check_features(features, metric=metric)
    return make_layout(pca_coords(features, metric), "pca")
