"""Snap a layout onto a regular grid: one neuron per cell, pixel-exact maps.

The grid has ``side = ceil(sqrt(n))`` cells per axis (``side^2 >= n``; the
cells left empty are chosen by the assignment). Two assignments:

* exact (``n <= EXACT_MAX``): the one-to-one assignment of neurons to cells
  with the least total squared displacement, by
  `scipy.optimize.linear_sum_assignment` on the host.
* approximate (large ``n``): recursive balanced bisection in JAX. The grid is
  halved along its longer side, the neurons are sorted along that axis and
  split in proportion to the cells of each half, and so on down to single
  cells. The split sizes depend only on ``n``, so the recursion is a fixed
  sequence of ``O(log n)`` segmented sorts: ``O(n log^2 n)`` time, ``O(n)``
  memory, jit-compiled once per ``n``.

`snap_quality` reports how much neighbourhood structure the snap keeps.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from topojax.layout.base import (
    Layout,
    check_features,
    initial_layout,
    make_layout,
    rescale_unit,
)

# Largest n for the exact assignment (an (n, side^2) cost matrix on the host).
EXACT_MAX = 1024


def grid_side(n: int) -> int:
    """Cells per axis, ``ceil(sqrt(n))``, at least 1."""
    return math.isqrt(max(n, 1) - 1) + 1


def grid_cells(n: int) -> np.ndarray:
    """Centres of the ``side x side`` grid cells in ``[0, 1]^2``, row-major.

    Args:
        n: number of neurons.

    Returns:
        ``(side^2, 2)`` float32 cell centres ``((col + 1/2) / side,
        (row + 1/2) / side)``.
    """
    side = grid_side(n)
    rows, cols = np.divmod(np.arange(side * side), side)
    return ((np.stack([cols, rows], axis=1) + 0.5) / side).astype(np.float32)


def grid_edges(n: int) -> np.ndarray:
    """Pairs of horizontally or vertically adjacent cells among the first ``n``.

    With neuron ``i`` in cell ``i`` of `grid_cells` (row-major), these are the
    map-neighbour pairs of a fixed grid map, e.g. for
    `topojax.layout.objectives.map_smoothness`.

    Args:
        n: number of neurons.

    Returns:
        ``(n_edges, 2)`` int32 pairs ``(i, j)`` with ``i < j < n``.
    """
    side = grid_side(n)
    cells = np.arange(n)
    right = cells[(cells % side < side - 1) & (cells + 1 < n)]
    down = cells[cells + side < n]
    pairs = np.concatenate(
        [np.stack([right, right + 1], 1), np.stack([down, down + side], 1)]
    )
    return pairs.astype(np.int32)


def _exact_assignment(coords: np.ndarray, cells: np.ndarray) -> np.ndarray:
    cost = ((coords[:, None, :] - cells[None, :, :]) ** 2).sum(-1)
    neurons, chosen = scipy.optimize.linear_sum_assignment(cost)
    assignment = np.empty(len(coords), dtype=np.int64)
    assignment[neurons] = chosen
    return assignment


@functools.lru_cache(maxsize=16)
def _bisection_plan(n: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Static plan of the recursive bisection for ``n`` neurons.

    Returns, per level, ``(segment_of_position, axis_of_position)`` int arrays
    of length ``n``: after the sort of a level, positions of one segment are
    contiguous; the next level sorts each segment along its axis. A final
    entry maps every position to its cell index.
    """
    side = grid_side(n)
    # A segment: (start, count, row0, row1, col0, col1), rows/cols half-open.
    segments = [(0, n, 0, side, 0, side)]
    levels = []
    while any(r1 - r0 > 1 or c1 - c0 > 1 for _, _, r0, r1, c0, c1 in segments):
        seg_of = np.zeros(n, np.int64)
        axis_of = np.zeros(n, np.int64)
        children = []
        for index, (start, count, r0, r1, c0, c1) in enumerate(segments):
            seg_of[start : start + count] = index
            height, width = r1 - r0, c1 - c0
            if height == 1 and width == 1:
                children.append((start, count, r0, r1, c0, c1))
                continue
            # Split the longer side; axis 0 is x (columns), axis 1 is y (rows).
            if width >= height:
                axis_of[start : start + count] = 0
                mid = c0 + width // 2
                halves = ((r0, r1, c0, mid), (r0, r1, mid, c1))
            else:
                axis_of[start : start + count] = 1
                mid = r0 + height // 2
                halves = ((r0, mid, c0, c1), (mid, r1, c0, c1))
            cells = [(b - a) * (d - c) for a, b, c, d in halves]
            first = min(
                cells[0], max(count - cells[1], round(count * cells[0] / sum(cells)))
            )
            children.append((start, first, *halves[0]))
            children.append((start + first, count - first, *halves[1]))
        levels.append((seg_of, axis_of))
        segments = [s for s in children if s[1] > 0]
    cell_of = np.zeros(n, np.int64)
    for start, count, r0, _, c0, _ in segments:
        cell_of[start : start + count] = r0 * side + c0
    return (*levels, (cell_of, np.zeros(0, np.int64)))


@functools.partial(jax.jit, static_argnames=("n_levels",))
def _bisect(coords, plan_segments, plan_axes, n_levels: int):
    n = coords.shape[0]
    order = jnp.arange(n)
    for level in range(n_levels):
        along = jnp.where(plan_axes[level] == 0, coords[order, 0], coords[order, 1])
        # Sort positions within each segment by the coordinate along its axis.
        perm = jnp.lexsort((along, plan_segments[level]))
        order = order[perm]
    return order


def _approximate_assignment(coords: np.ndarray) -> np.ndarray:
    n = len(coords)
    plan = _bisection_plan(n)
    levels, (cell_of, _) = plan[:-1], plan[-1]
    if not levels:
        return cell_of.copy()
    segments = jnp.asarray(np.stack([s for s, _ in levels]), jnp.int32)
    axes = jnp.asarray(np.stack([a for _, a in levels]), jnp.int32)
    order = np.asarray(_bisect(jnp.asarray(coords), segments, axes, len(levels)))
    assignment = np.empty(n, np.int64)
    assignment[order] = cell_of
    return assignment


def snap_to_grid(coords, *, exact: bool | None = None) -> Layout:
    """Move every neuron to its own cell of a regular ``side x side`` grid.

    Args:
        coords: ``(n_neurons, 2)`` layout (rescaled to the unit square first).
        exact: optimal assignment (True, Hungarian method on the host) or
            recursive bisection (False); default ``n_neurons <= EXACT_MAX``.

    Returns:
        `Layout` named ``"grid"`` whose ``coords`` are distinct cell centres,
        rescaled to ``[0, 1]^2``.

    Raises:
        ValueError: coords not ``(n, 2)`` or not finite.
    """
    coords = check_features(coords, metric="euclidean")
    if coords.shape[1] != 2:
        raise ValueError(f"coords must have shape (n_neurons, 2); got {coords.shape}")
    n = coords.shape[0]
    unit = np.asarray(rescale_unit(coords), dtype=np.float64)
    cells = grid_cells(n)
    use_exact = n <= EXACT_MAX if exact is None else exact
    assignment = (
        _exact_assignment(unit, cells) if use_exact else _approximate_assignment(unit)
    )
    return make_layout(jnp.asarray(cells[assignment]), "grid")


def grid_layout(
    features,
    *,
    key: jax.Array,
    metric: str = "cosine",
    init=None,
    exact: bool | None = None,
) -> Layout:
    """Grid layout: a layout snapped onto a regular grid (use ``"optimize+grid"``).

    Args:
        features: ``(n_neurons, n_features)``.
        key: PRNG key, passed to the method that makes the initial layout.
        metric: feature distance.
        init: ``(n_neurons, 2)`` coordinates to snap, or a method name in
            ``topojax.layout.METHODS``; default ``"pca"`` (cheap). In a chain
            such as ``"optimize+grid"``, the recommended use, the previous
            layout is passed here.
        exact: see `snap_to_grid`.

    Returns:
        `Layout` named ``"grid"``.
    """
    features = check_features(features, metric=metric)
    init = initial_layout(features, init, key=key, metric=metric)
    return snap_to_grid(init, exact=exact)


def snap_quality(
    features, before, after, *, metric: str = "cosine", k: int = 10
) -> dict[str, float]:
    """Neighbourhood quality before and after snapping (what the grid keeps).

    Args:
        features: ``(n_neurons, n_features)``.
        before: ``(n_neurons, 2)`` layout before snapping.
        after: ``(n_neurons, 2)`` snapped layout.
        metric: feature distance.
        k: neighbours (lowered to ``(n - 1) // 2`` for small layers).

    Returns:
        ``{"trustworthiness_before", "trustworthiness_after", "knn_recall_before",
        "knn_recall_after", "kept_map_neighbours"}``; the last is the fraction of
        each neuron's ``k`` map neighbours before the snap that are still among
        its ``k`` map neighbours after it.
    """
    from topojax.metrics import knn_recall, trustworthiness

    features = check_features(features, metric=metric)
    n = features.shape[0]
    k = min(k, (n - 1) // 2)
    if k < 1:
        raise ValueError(f"snap_quality needs at least 3 neurons; got {n}")
    return {
        "trustworthiness_before": float(
            trustworthiness(features, before, k, metric=metric)
        ),
        "trustworthiness_after": float(
            trustworthiness(features, after, k, metric=metric)
        ),
        "knn_recall_before": float(knn_recall(features, before, k, metric=metric)),
        "knn_recall_after": float(knn_recall(features, after, k, metric=metric)),
        "kept_map_neighbours": float(knn_recall(before, after, k, metric="euclidean")),
    }
