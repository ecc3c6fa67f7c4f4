"""The paper's "PSO" layout: a deterministic pairwise-force simulation.

Exactly the force law of the reference code (digest §3.5). For ``T`` steps with
``s = linspace(-3, 6, T)``, ``w_loc = (tanh(s) + 1) / 2`` and
``w_glob = (1 - tanh(s)) / 2``, every neuron moves synchronously by::

    x_i += (1 / N) * sum_j F_ij * (x_j - x_i)
    F_ij = (w_loc * f_loc(d_ij) + w_glob * f_glob(D_ij)) / 2
    f_loc(d) = 1.5 / (1 + d)^3 - 15 * exp(-d / 2),   d = max(|x_i - x_j|, 0.01)
    f_glob(D) = a_g * (1 - (D / max D)^3) - b_g * exp(-D / c_g)   (0 if not finite)

where ``D`` are the high-dimensional distances. Positive F attracts, negative
repels; ``f_loc`` repels for every ``d < 23.9``.

- From a uniform random start (``init=None``, the paper's ``PSO``):
  ``a_g = 1.5, b_g = 0.5, c_g = 2``.
- From a given layout (``init=coords``, the paper's ``X_PSO``, e.g. the chain
  ``"umap+swarm"``): the start is min-max scaled to ``[0, 1]`` per axis and the
  global force is off (``a_g = b_g = 0``), so the run is a strengthening pure
  repulsion that spreads the layout into an even disk and removes overlaps.
  A seeded jitter of ``jitter`` (default 1e-4) is added so that duplicate
  positions, which no pairwise force can separate, come apart.

Positions are stored centred and scaled to unit RMS radius, with the scale
kept separately (`_normalise`). The forces depend on differences only, so this
is the same arithmetic in exact numbers; it matters for the plain run, whose
swarm first contracts by many orders of magnitude: in the float64 reference it
collapses to one numerical point (spread 1e-16 by step 100) and re-expands from
rounding noise, while here the contracted shape stays resolved in float32
(equal to the float64 reference to 1e-6 while that one is still resolved).

The sum is computed as ``sum_j F_ij (x_j - x_i)`` per coordinate over blocks of
rows (`lax.map`), so memory is ``O(block_size * N)``, never ``(N, N, 2)``. The
global-force matrix is precomputed once when ``N <= DENSE_MAX_NEURONS`` (4096,
64 MB); beyond, its row blocks are recomputed from the features every step
(compute ``O(N^2 d)`` per step), and with the global force off no distances are
needed at all. The result is rescaled to ``[0, 1]^2`` keeping the aspect ratio
(`rescale_unit(..., keep_aspect=True)`), so the disk stays round.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from topojax.layout._iterative import (
    check_init,
    check_positive,
    check_positive_int,
    frame_stride,
    rescale_frames,
    scan_with_frames,
)
from topojax.layout.base import Layout, check_features, pairwise_distances, rescale_unit

DENSE_MAX_NEURONS = 4096
_MIN_DISTANCE = 0.01


def local_force(distance: jax.Array) -> jax.Array:
    """The paper's local force ``1.5 / (1 + d)^3 - 15 exp(-d / 2)``, d >= 0.01.

    Example: ``local_force(1.0)`` is about -8.9, ``local_force(5.0)`` about -1.22.
    """
    d = jnp.maximum(distance, _MIN_DISTANCE)
    return 1.5 / (1.0 + d) ** 3 - 15.0 * jnp.exp(-d / 2.0)


def global_force(
    distance: jax.Array, max_distance: jax.Array, a_g, b_g, c_g
) -> jax.Array:
    """The paper's global force ``a_g (1 - (D / Dmax)^3) - b_g exp(-D / c_g)``.

    Entries that are not finite (e.g. ``Dmax = 0``) are 0.
    """
    force = a_g * (1.0 - (distance / max_distance) ** 3) - b_g * jnp.exp(
        -distance / c_g
    )
    return jnp.where(jnp.isfinite(force), force, 0.0)


def schedule(step: jax.Array, n_steps: int) -> tuple[jax.Array, jax.Array]:
    """``(w_loc, w_glob)`` at ``step`` of ``s = linspace(-3, 6, n_steps)``."""
    s = -3.0 + 9.0 * step / max(n_steps - 1, 1)
    return (jnp.tanh(s) + 1.0) / 2.0, (1.0 - jnp.tanh(s)) / 2.0


def _row_blocks(n: int, block_size: int) -> tuple[int, int]:
    block = min(block_size, n)
    return block, -(-n // block)


def _blocked_move(x, scale, w_loc, w_glob, glob_blocks, glob_fn, block_size):
    """``(1 / N) sum_j F_ij (x_j - x_i)`` for every row, ``(n, 2)``.

    The true positions are ``scale * x``; the move is returned in units of x.
    """
    n = x.shape[0]
    block, n_blocks = _row_blocks(n, block_size)
    padded = jnp.pad(x, ((0, n_blocks * block - n), (0, 0))).reshape(n_blocks, block, 2)

    def one_block(args):
        rows, glob = args
        dx = x[None, :, 0] - rows[:, 0, None]
        dy = x[None, :, 1] - rows[:, 1, None]
        force = w_loc * local_force(scale * jnp.sqrt(dx * dx + dy * dy))
        if glob_fn is not None:
            force = force + w_glob * glob_fn(glob)
        force = force / 2.0
        return jnp.stack([(force * dx).sum(axis=1), (force * dy).sum(axis=1)], axis=1)

    move = jax.lax.map(one_block, (padded, glob_blocks))
    return move.reshape(-1, 2)[:n] / n


def _normalise(x: jax.Array, log_scale: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Centre ``x`` and scale it to unit RMS radius, moving the scale to ``log_scale``.

    The forces depend on differences only, so this changes nothing but the
    floating-point representation; it keeps the collapse of the plain run (to
    a numerical point in the reference code) resolvable in float32.
    """
    x = x - x.mean(axis=0, keepdims=True)
    radius = jnp.sqrt(jnp.mean(jnp.sum(x * x, axis=1)))
    ok = radius > 1e-30
    x = x / jnp.where(ok, radius, 1.0)
    return x, log_scale + jnp.where(ok, jnp.log(jnp.where(ok, radius, 1.0)), 0.0)


@functools.partial(
    jax.jit,
    static_argnames=("metric", "n_steps", "use_global", "dense", "block_size", "every"),
)
def _swarm_core(
    features,
    start,
    a_g,
    b_g,
    c_g,
    *,
    metric: str,
    n_steps: int,
    use_global: bool,
    dense: bool,
    block_size: int,
    every: int,
):
    n = features.shape[0]
    block, n_blocks = _row_blocks(n, block_size)
    pad = n_blocks * block - n
    if not use_global:
        glob_blocks = jnp.zeros((n_blocks, 0))
        glob_fn = None
    elif dense:
        distance = pairwise_distances(features, features, metric)
        force = global_force(distance, distance.max(), a_g, b_g, c_g)
        glob_blocks = jnp.pad(force, ((0, pad), (0, 0))).reshape(n_blocks, block, n)

        def glob_fn(rows):
            return rows

    else:
        glob_blocks = jnp.pad(features, ((0, pad), (0, 0))).reshape(n_blocks, block, -1)
        max_distance = jax.lax.map(
            lambda rows: pairwise_distances(rows, features, metric).max(), glob_blocks
        ).max()

        def glob_fn(rows):
            distance = pairwise_distances(rows, features, metric)
            return global_force(distance, max_distance, a_g, b_g, c_g)

    def step(state, t):
        x, log_scale = state
        w_loc, w_glob = schedule(t, n_steps)
        move = _blocked_move(
            x, jnp.exp(log_scale), w_loc, w_glob, glob_blocks, glob_fn, block
        )
        return _normalise(x + move, log_scale), None

    state = _normalise(start, jnp.float32(0.0))
    (x, _), frames, _ = scan_with_frames(step, state, n_steps, every, lambda s: s[0])
    return rescale_unit(x, keep_aspect=True), rescale_frames(frames, keep_aspect=True)


def swarm_layout(
    features,
    *,
    key: jax.Array,
    metric: str = "cosine",
    init=None,
    return_trajectory: bool = False,
    n_steps: int = 1000,
    a_g: float | None = None,
    b_g: float | None = None,
    c_g: float = 2.0,
    jitter: float = 1e-4,
    block_size: int = 1024,
    dense_max: int = DENSE_MAX_NEURONS,
    trajectory_every: int | None = None,
) -> Layout:
    """The paper's "PSO" force layout, or its refinement of a given layout.

    Args:
        features: ``(n_neurons, n_features)``.
        key: PRNG key: the uniform random start, or the jitter of ``init``.
        metric: distance for the global force, one of `base.METRICS`.
        init: optional ``(n_neurons, 2)`` start (refinement, ``X_PSO``).
        return_trajectory: also return positions every ``trajectory_every``
            steps (each frame rescaled like the result).
        n_steps: ``T``, the number of steps.
        a_g: global attraction; default 1.5 from random, 0 with ``init``.
        b_g: global repulsion; default 0.5 from random, 0 with ``init``.
        c_g: length scale of the global repulsion.
        jitter: standard deviation of the seeded noise added to ``init``.
        block_size: rows per block of the force sum.
        dense_max: largest ``n`` for which the global-force matrix is kept.
        trajectory_every: steps between frames; default ``n_steps // 100``.

    Returns:
        `Layout` with ``coords`` ``(n_neurons, 2)`` in ``[0, 1]^2`` (aspect
        kept) and optionally ``trajectory`` ``(n_frames, n_neurons, 2)``.

    Raises:
        ValueError: bad features, metric, init shape or option values.
    """
    features = check_features(features, metric=metric)
    n = features.shape[0]
    init = check_init(init, n)
    n_steps = check_positive_int("n_steps", n_steps)
    refine = init is not None
    a_g = check_positive(
        "a_g", (0.0 if refine else 1.5) if a_g is None else a_g, allow_zero=True
    )
    b_g = check_positive(
        "b_g", (0.0 if refine else 0.5) if b_g is None else b_g, allow_zero=True
    )
    c_g = check_positive("c_g", c_g)
    jitter = check_positive("jitter", jitter, allow_zero=True)
    block_size = check_positive_int("block_size", block_size)
    dense_max = check_positive_int("dense_max", dense_max, minimum=0)
    every = frame_stride(return_trajectory, trajectory_every, n_steps)

    if init is None:
        start = jax.random.uniform(key, (n, 2))
    else:
        start = rescale_unit(init) + jitter * jax.random.normal(key, (n, 2))
    coords, frames = _swarm_core(
        features,
        start,
        jnp.float32(a_g),
        jnp.float32(b_g),
        jnp.float32(c_g),
        metric=metric,
        n_steps=n_steps,
        use_global=a_g != 0 or b_g != 0,
        dense=n <= dense_max,
        block_size=block_size,
        every=every,
    )
    return Layout(coords=coords, method="swarm", trajectory=frames)
