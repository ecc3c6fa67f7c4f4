"""Stretch a layout's outline onto the square (or disk): maps without empty corners.

Neighbour-embedding layouts (t-SNE, UMAP, `optimize`) end as round or ragged
clouds. Drawn in the unit square, the pixels outside their convex hull are
blank, and the hull's edge between coloured and blank pixels is where the
paper's blur metric finds most of its error (`optimize` on the demo MLP's
first hidden layer: blur AUC 0.021, 0.017 with the blank pixels filled in).
`fill_shape` moves every neuron along the ray from the layout's centroid ``c``:

``y' = c + (y - c) * S(theta) / R(theta)``

where ``theta`` is the ray's angle, ``R(theta)`` the distance from ``c`` to the
layout's convex hull in that direction and ``S(theta)`` the distance to the
boundary of the target shape: the unit square, or the disk of radius 1/2
around the centre (where ``c`` is moved). Every hull vertex lands on the
boundary, each neuron keeps its angle and the order of radii along each ray is
kept, so map neighbourhoods change only by the stretch, which is smooth along
the hull's edges (it is not uniform: up to about 1.4x more towards the
square's corners than towards its sides). The hull comes from
`scipy.spatial.ConvexHull` (Qhull, as the renderer's triangulation) and the
ray intersections are ``O(n h)`` NumPy for ``h`` hull vertices; no
compilation.

`fill_layout` (the registry's ``"fill"``) applies it to another layout, e.g.
``"optimize+fill"``; `bench/README.md` shows what it keeps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.spatial

from topojax.layout.base import (
    Layout,
    check_features,
    initial_layout,
    make_layout,
    rescale_unit,
)

SHAPES = ("square", "disk")


def _ray_exit(centre: np.ndarray, direction: np.ndarray, polygon: np.ndarray):
    """``(n,)`` distances from ``centre`` along unit ``direction`` to a polygon.

    ``polygon``: ``(F, 2)`` vertices, in order, of a convex polygon around
    ``centre``; ``inf`` where a direction is zero.
    """
    start = polygon - centre  # (F, 2) edge starts relative to the centre
    edge = np.roll(polygon, -1, axis=0) - polygon  # (F, 2)
    # centre + t d = start + s e  =>  t (d x e) = start x e,  s (d x e) = start x d
    cross = (
        direction[:, None, 0] * edge[None, :, 1]
        - direction[:, None, 1] * edge[None, :, 0]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (
            start[None, :, 0] * edge[None, :, 1] - start[None, :, 1] * edge[None, :, 0]
        ) / cross
        s = (
            start[None, :, 0] * direction[:, None, 1]
            - start[None, :, 1] * direction[:, None, 0]
        ) / cross
    hit = (np.abs(cross) > 1e-15) & (t > 0) & (s >= -1e-9) & (s <= 1 + 1e-9)
    return np.where(hit, t, np.inf).min(axis=1)


_SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])


def _fill(coords: np.ndarray, shape: str) -> np.ndarray | None:
    """The stretched positions (float64), or None for a degenerate layout."""
    try:
        hull = coords[scipy.spatial.ConvexHull(coords).vertices]
    except scipy.spatial.QhullError:  # fewer than 3 distinct or collinear points
        return None
    centre = coords.mean(axis=0)
    offset = coords - centre
    radius = np.sqrt((offset**2).sum(axis=1))
    moving = radius > 1e-12
    direction = np.where(
        moving[:, None], offset / np.where(moving, radius, 1.0)[:, None], 0.0
    )
    outline = np.maximum(_ray_exit(centre, direction, hull), radius)
    if shape == "disk":
        target, reach = np.full(2, 0.5), np.full(len(coords), 0.5)
    else:
        target, reach = centre, _ray_exit(centre, direction, _SQUARE)
    scale = np.where(
        moving & np.isfinite(outline), reach / np.maximum(outline, 1e-12), 0.0
    )
    return np.clip(target + offset * scale[:, None], 0.0, 1.0)


def fill_shape(coords, *, shape: str = "square") -> Layout:
    """Stretch a layout so that its outline fills the unit square or disk.

    Args:
        coords: ``(n_neurons, 2)`` coordinates (a `Layout`'s ``coords``); they
            are first rescaled to the unit square like every layout.
        shape: ``"square"`` or ``"disk"`` (the inscribed disk, as drawn by
            ``render(..., shape="disk")``).

    Returns:
        `Layout` named ``"fill"`` with coordinates in ``[0, 1]^2``.

    Raises:
        ValueError: unknown shape, or coordinates not finite ``(n, 2)``.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {list(SHAPES)}")
    coords = np.asarray(coords, dtype=np.float32)
    if coords.ndim != 2 or coords.shape[1] != 2 or not np.isfinite(coords).all():
        raise ValueError(
            f"coords must be finite with shape (n_neurons, 2); got {coords.shape}"
        )
    unit = np.asarray(rescale_unit(jnp.asarray(coords)), dtype=np.float64)
    filled = _fill(unit, shape) if len(unit) >= 3 else None
    if filled is None:
        return make_layout(jnp.asarray(unit, jnp.float32), "fill")
    filled = jnp.asarray(filled, jnp.float32)
    if shape == "disk":  # inside the unit square already; not rescaled per axis
        return Layout(coords=filled, method="fill")
    return make_layout(filled, "fill")


def fill_layout(
    features,
    *,
    key: jax.Array,
    metric: str = "cosine",
    init=None,
    shape: str = "square",
) -> Layout:
    """A layout stretched to fill the map (use ``"optimize+fill"``).

    Args:
        features: ``(n_neurons, n_features)``.
        key: PRNG key, passed to the method that makes the initial layout.
        metric: feature distance.
        init: ``(n_neurons, 2)`` coordinates to stretch, or a method name in
            ``topojax.layout.METHODS``; default ``"pca"``. In a chain such as
            ``"optimize+fill"`` the previous layout is passed here.
        shape: ``"square"`` or ``"disk"``.

    Returns:
        `Layout` named ``"fill"``.

    Raises:
        ValueError: bad features, metric, shape or init.
    """
    features = check_features(features, metric=metric)
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {list(SHAPES)}")
    init = initial_layout(features, init, key=key, metric=metric)
    return fill_shape(init, shape=shape)
