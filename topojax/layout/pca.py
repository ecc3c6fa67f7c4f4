"""Principal component analysis layout: the two leading principal axes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from topojax.layout.base import Layout, check_features, make_layout, prepare


@functools.partial(jax.jit, static_argnames=("metric",))
def pca_coords(features: jax.Array, metric: str = "cosine") -> jax.Array:
    """Project prepared ``(n, d)`` features on their two leading principal axes.

    The sign of each axis is fixed (largest-magnitude loading positive) so the
    result is deterministic. Fewer than two informative axes give zeros there.

    Returns:
        ``(n, 2)`` unscaled coordinates.
    """
    x, _ = prepare(features, metric)
    x = x - x.mean(axis=0, keepdims=True)
    # SVD of the (d, d) covariance-sized problem is cheap for the usual d << n.
    if x.shape[1] < 2:
        x = jnp.pad(x, ((0, 0), (0, 2 - x.shape[1])))
    _, _, vt = jnp.linalg.svd(x, full_matrices=False)
    axes = vt[:2]
    signs = jnp.sign(axes[jnp.arange(2), jnp.argmax(jnp.abs(axes), axis=1)])
    axes = axes * jnp.where(signs == 0, 1.0, signs)[:, None]
    return x @ axes.T


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
