"""Layout methods: neuron features to 2-D positions.

Each method maps neuron features ``(n_neurons, n_features)`` to a `Layout` with
``coords`` ``(n_neurons, 2)`` in ``[0, 1]^2``.

``METHODS`` maps names to functions with the common contract
``fn(features, *, key, metric="cosine", **options) -> Layout``. Names joined with
``+`` chain methods: ``"umap+swarm"`` runs ``umap`` then refines its result with
``swarm(features, key=..., init=coords)``; every method after the first must
accept ``init``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from topojax.layout.base import (
    METRICS,
    Layout,
    check_features,
    knn,
    make_layout,
    pairwise_distances,
    rescale_unit,
)
from topojax.layout.fill import fill_layout, fill_shape
from topojax.layout.graph import graph_layout
from topojax.layout.grid import grid_layout, snap_to_grid
from topojax.layout.optimize import optimize as optimize_layout
from topojax.layout.pca import pca_layout
from topojax.layout.random import random_layout
from topojax.layout.som import som_layout
from topojax.layout.spectral import spectral as spectral_layout
from topojax.layout.swarm import swarm_layout
from topojax.layout.tsne import tsne_layout
from topojax.layout.umap import umap_layout

LayoutFn = Callable[..., Layout]

METHODS: dict[str, LayoutFn] = {
    "random": random_layout,
    "pca": pca_layout,
    "spectral": spectral_layout,
    "som": som_layout,
    "graph": graph_layout,
    "tsne": tsne_layout,
    "umap": umap_layout,
    "swarm": swarm_layout,
    "optimize": optimize_layout,
    "grid": grid_layout,
    "fill": fill_layout,
}


def get_method(name: str) -> LayoutFn:
    """Return the layout function for ``name``, a method or ``a+b`` chain.

    Raises:
        ValueError: if any part of the name is not in `METHODS`.
    """
    parts = name.split("+")
    unknown = [part for part in parts if part not in METHODS]
    if unknown or not name:
        raise ValueError(
            f"unknown layout method {name!r}; expected one of {sorted(METHODS)} "
            "or a chain of them joined by '+' (e.g. 'umap+swarm')"
        )
    if len(parts) == 1:
        return METHODS[name]
    return _chain(parts)


def _chain(parts: list[str]) -> LayoutFn:
    def chained(features, *, key: jax.Array, metric: str = "cosine") -> Layout:
        keys = jax.random.split(key, len(parts))
        result = METHODS[parts[0]](features, key=keys[0], metric=metric)
        for part, part_key in zip(parts[1:], keys[1:], strict=True):
            result = METHODS[part](
                features, key=part_key, metric=metric, init=result.coords
            )
        return Layout(
            coords=result.coords,
            method="+".join(parts),
            trajectory=result.trajectory,
            losses=result.losses,
        )

    return chained


def layout(features, method: str | LayoutFn = "pca", *, key: jax.Array, **options):
    """Lay out neurons with a method given by name or as a function.

    Args:
        features: ``(n_neurons, n_features)``.
        method: a name in `METHODS` (or an ``a+b`` chain), or a layout function.
        key: PRNG key.
        **options: passed to the method (e.g. ``metric``).

    Returns:
        `Layout`.
    """
    fn = get_method(method) if isinstance(method, str) else method
    return fn(features, key=key, **options)


__all__ = [
    "METHODS",
    "METRICS",
    "Layout",
    "LayoutFn",
    "check_features",
    "fill_layout",
    "fill_shape",
    "get_method",
    "graph_layout",
    "grid_layout",
    "knn",
    "layout",
    "make_layout",
    "optimize_layout",
    "pairwise_distances",
    "pca_layout",
    "random_layout",
    "rescale_unit",
    "snap_to_grid",
    "som_layout",
    "spectral_layout",
    "swarm_layout",
    "tsne_layout",
    "umap_layout",
]
