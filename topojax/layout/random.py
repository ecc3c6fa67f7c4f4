"""The paper's baseline: positions drawn uniformly from the unit square."""

from __future__ import annotations

import jax

from topojax.layout.base import Layout, check_features, make_layout


def random_layout(features, *, key: jax.Array, metric: str = "cosine") -> Layout:
    """Uniform random positions in ``[0, 1]^2``, ignoring the features.

    Args:
        features: ``(n_neurons, n_features)``; only its row count is used.
        key: PRNG key.
        metric: checked for validity only.

    Returns:
        `Layout` with ``coords`` ``(n_neurons, 2)``.
    """
    features = check_features(features, metric=metric)
    coords = jax.random.uniform(key, (features.shape[0], 2))
    return make_layout(coords, "random")
