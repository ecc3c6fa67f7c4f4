"""Stretch a layout's outline onto the square (or disk): maps without empty corners.

Neighbour-embedding layouts (t-SNE, UMAP, `optimize`) end as round or ragged
clouds. Drawn in the unit square, the pixels outside their convex hull are
blank, and the hull's edge between coloured and blank pixels is where the
paper's blur metric finds most of its error (`optimize` on the demo MLP's
first hidden layer: blur AUC 0.021, 0.017 with the blank pixels filled in).
`fill_shape` moves every neuron along the ray from the layout's centroid ``c``:

``y' = c + g (y - c)`` with ``g = 1 + (S / R - 1) u^p``, ``u = |y - c| / R``

where ``theta`` is the ray's angle, ``R(theta)`` the distance from ``c`` to the
layout's convex hull in that direction and ``S(theta)`` the distance to the
boundary of the target shape: the unit square, or the disk of radius 1/2
around the centre (where ``c`` is moved). Every hull vertex (``u = 1``) lands
on the boundary and each neuron keeps its angle and its order along the ray.
The power ``p`` says how deep the stretch reaches: ``p = 0`` scales every
neuron by ``S / R`` (the whole layout is stretched, up to about 1.4x more
towards the square's corners than towards its sides), large ``p`` moves only
the rim and leaves the inside as it was. The default `RIM_POWER` = 32 moves a
neuron at 90 % of the way to the hull by 3 % of its gap, at 98 % by half: on
the demo and synthetic layers it kept 0.97-1.0 of `optimize`'s kNN recall with
the same blur as ``p = 0``, which kept 0.95-0.98 (`bench/README.md`). Where
the hull reaches beyond the disk (``S < R``) the layout is first shrunk
uniformly so that the stretch is outward everywhere and keeps every ray's
order. The hull comes from `scipy.spatial.ConvexHull` (Qhull, as the
renderer's triangulation) and the ray intersections are ``O(n h)`` NumPy for
``h`` hull vertices; no compilation.

`optimize` ends with it by default (``fill=False`` turns it off);
`fill_layout` (the registry's ``"fill"``) applies it to any other layout, e.g.
``"umap+fill"``.
"""

from __future__ import annotations

import math

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
# Default depth of the stretch (see the module docstring).
RIM_POWER = 32.0


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


def _fill(coords: np.ndarray, shape: str, power: float) -> np.ndarray | None:
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
    valid = moving & np.isfinite(outline)
    ratio = np.where(valid, reach / np.maximum(outline, 1e-12), 1.0)
    # Shrink first where the hull pokes out of the shape, so that the rim
    # stretch below is outward (ratio >= 1) and keeps each ray's order.
    shrink = min(1.0, float(ratio[valid].min())) if valid.any() else 1.0
    depth = np.where(valid, radius / np.maximum(outline, 1e-12), 0.0)
    scale = shrink * (1.0 + (ratio / shrink - 1.0) * np.clip(depth, 0.0, 1.0) ** power)
    return np.clip(target + offset * np.where(valid, scale, 0.0)[:, None], 0.0, 1.0)


def fill_shape(coords, *, shape: str = "square", power: float = RIM_POWER) -> Layout:
    """Stretch a layout so that its outline fills the unit square or disk.

    Args:
        coords: ``(n_neurons, 2)`` coordinates (a `Layout`'s ``coords``); they
            are first rescaled to the unit square like every layout.
        shape: ``"square"`` or ``"disk"`` (the inscribed disk, as drawn by
            ``render(..., shape="disk")``).
        power: depth of the stretch, ``>= 0``: 0 stretches the whole layout,
            larger values only its rim (module docstring).

    Returns:
        `Layout` named ``"fill"`` with coordinates in ``[0, 1]^2``.

    Raises:
        ValueError: unknown shape, negative power, or coordinates not
            finite ``(n, 2)``.
    """
    _check_options(shape, power)
    coords = np.asarray(coords, dtype=np.float32)
    if coords.ndim != 2 or coords.shape[1] != 2 or not np.isfinite(coords).all():
        raise ValueError(
            f"coords must be finite with shape (n_neurons, 2); got {coords.shape}"
        )
    unit = np.asarray(rescale_unit(jnp.asarray(coords)), dtype=np.float64)
    filled = _fill(unit, shape, float(power)) if len(unit) >= 3 else None
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
    power: float = RIM_POWER,
) -> Layout:
    """A layout stretched to fill the map (e.g. ``"umap+fill"``).

    Args:
        features: ``(n_neurons, n_features)``.
        key: PRNG key, passed to the method that makes the initial layout.
        metric: feature distance.
        init: ``(n_neurons, 2)`` coordinates to stretch, or a method name in
            ``topojax.layout.METHODS``; default ``"pca"``. In a chain such as
            ``"umap+fill"`` the previous layout is passed here.
        shape: ``"square"`` or ``"disk"``.
        power: depth of the stretch (`fill_shape`).

    Returns:
        `Layout` named ``"fill"``.

    Raises:
        ValueError: bad features, metric, shape, power or init.
    """
    features = check_features(features, metric=metric)
    _check_options(shape, power)
    init = initial_layout(features, init, key=key, metric=metric)
    return fill_shape(init, shape=shape, power=power)


def _check_options(shape: str, power: float) -> None:
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {list(SHAPES)}")
    if not (isinstance(power, (int, float)) and math.isfinite(power) and power >= 0):
        raise ValueError(f"power must be a finite number >= 0; got {power!r}")
