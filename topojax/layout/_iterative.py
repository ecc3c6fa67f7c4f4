"""Shared pieces of the iterative layout methods (t-SNE, UMAP, swarm).

Private helpers: option checks, a `lax.scan` driver that records a subsampled
trajectory, and the symmetrisation of a k-nearest-neighbour graph into a
sparse, directed edge list that holds each ordered pair once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from topojax.layout.base import rescale_unit
from topojax.layout.pca import principal_axes

DEFAULT_FRAMES = 100


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise a ValueError if it is not one >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, or raise a ValueError if it is not > 0 (>= 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} must be a number; got {value!r}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not np.isfinite(value) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {value}")
    return value


def check_init(init: Any, n_neurons: int) -> jax.Array | None:
    """Validate initial coordinates: ``None`` or a finite ``(n_neurons, 2)`` array."""
    if init is None:
        return None
    array = np.asarray(init)
    if array.shape != (n_neurons, 2):
        raise ValueError(
            f"init must have shape (n_neurons, 2) = ({n_neurons}, 2); "
            f"got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise ValueError("init must contain finite real numbers")
    return jnp.asarray(array, dtype=jnp.float32)


def frame_stride(
    return_trajectory: bool, trajectory_every: int | None, n_steps: int
) -> int:
    """Steps between recorded frames; 0 means record none.

    By default about `DEFAULT_FRAMES` frames are kept, whatever the step count.
    """
    if not return_trajectory:
        return 0
    if trajectory_every is None:
        return max(1, n_steps // DEFAULT_FRAMES)
    return check_positive_int("trajectory_every", trajectory_every)


def scan_with_frames(
    step: Callable[[Any, jax.Array], tuple[Any, Any]],
    carry: Any,
    n_steps: int,
    every: int,
    positions: Callable[[Any], jax.Array],
) -> tuple[Any, jax.Array | None, Any]:
    """Run ``carry, out = step(carry, t)`` for ``t = 0 .. n_steps - 1`` in a scan.

    With ``every > 0`` the positions are recorded before the first step, after
    every ``every``-th step and after the last one, so the memory of the
    trajectory is ``O(n_steps / every * n * 2)``.

    Args:
        step: the update; ``t`` is the int32 step index.
        carry: initial state.
        n_steps: number of steps (static).
        every: steps between frames (static); 0 records no frames.
        positions: maps a state to its ``(n, 2)`` positions.

    Returns:
        ``(carry, frames, outs)``: the final state, ``(n_frames, n, 2)`` frames or
        None, and the per-step outputs stacked to ``(n_steps, ...)``.
    """
    if every <= 0:
        carry, outs = jax.lax.scan(step, carry, jnp.arange(n_steps))
        return carry, None, outs
    n_chunks, rest = divmod(n_steps, every)

    def chunk(carry, index):
        carry, outs = jax.lax.scan(step, carry, index * every + jnp.arange(every))
        return carry, (positions(carry), outs)

    frames = [positions(carry)[None]]
    carry, (chunk_frames, outs) = jax.lax.scan(chunk, carry, jnp.arange(n_chunks))
    frames.append(chunk_frames)
    outs = jax.tree_util.tree_map(lambda o: o.reshape(-1, *o.shape[2:]), outs)
    if rest:
        carry, rest_outs = jax.lax.scan(
            step, carry, n_chunks * every + jnp.arange(rest)
        )
        outs = jax.tree_util.tree_map(
            lambda a, b: jnp.concatenate([a, b]), outs, rest_outs
        )
        frames.append(positions(carry)[None])
    return carry, jnp.concatenate(frames), outs


pca_init = principal_axes


def rescale_frames(frames: jax.Array | None, *, keep_aspect: bool = False):
    """Rescale each ``(n, 2)`` frame of ``(n_frames, n, 2)`` to the unit square."""
    if frames is None:
        return None
    return jax.vmap(lambda f: rescale_unit(f, keep_aspect=keep_aspect))(frames)


def symmetric_edges(
    neighbors: jax.Array,
    weights: jax.Array,
    combine: Callable[[jax.Array, jax.Array], jax.Array],
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Symmetrise a directed k-NN graph into an edge list with each ordered pair once.

    For ``j`` in the neighbours of ``i`` with weight ``a = w(i -> j)`` and
    ``b = w(j -> i)`` (0 if ``i`` is not a neighbour of ``j``), the symmetric
    weight is ``combine(a, b)``. The list holds the forward entries ``(i, j)``
    for every neighbour, plus the reverse entry ``(j, i)`` where the pair is not
    mutual (mutual pairs already appear from both rows; their reverse copy gets
    weight 0), so it has a fixed size ``2 * n * k`` for jit.

    Args:
        neighbors: ``(n, k)`` int neighbour indices (no self).
        weights: ``(n, k)`` directed weights ``w(i -> neighbors[i, m])``.
        combine: symmetric combination, e.g. the fuzzy union ``a + b - a * b``.

    Returns:
        ``(heads, tails, values)``, each ``(2 * n * k,)``.
    """
    n, k = neighbors.shape
    rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, k))
    # b = w(j -> i): look for i among the neighbours of j (k comparisons per edge).
    back_hit = neighbors[neighbors] == rows[:, :, None]
    back = jnp.sum(jnp.where(back_hit, weights[neighbors], 0.0), axis=-1)
    mutual = jnp.any(back_hit, axis=-1)
    values = combine(weights, back)
    heads = jnp.concatenate([rows.reshape(-1), neighbors.reshape(-1)])
    tails = jnp.concatenate([neighbors.reshape(-1), rows.reshape(-1)])
    values = jnp.concatenate(
        [values.reshape(-1), jnp.where(mutual, 0.0, values).reshape(-1)]
    )
    return heads, tails, values
