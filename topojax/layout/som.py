"""Self-organising map layout (the paper's ``SOM``, MiniSom defaults), in JAX.

A square grid of ``side x side`` nodes (``side = int(sqrt(n)) + 1``, at least 2)
is trained online on the prepared neuron features: each step takes one neuron,
finds its best-matching node (Euclidean) and pulls that node and its Gaussian
grid neighbourhood towards it. Learning rate and neighbourhood width follow
MiniSom's ``asymptotic_decay``, ``v(t) = v0 / (1 + t / (T / 2))``. Every neuron
is then placed at its winning node; neurons that share a node are spread evenly
on a circle of radius 0.2 cells around it, so none hides another.

The training is the sequential (online) algorithm of MiniSom, one neuron per
step inside a single `jax.lax.scan`, not a batched SOM: given the same initial
weights and visiting order it gives MiniSom's weights (to float32 rounding; see
``tests/layout/test_som.py``). The update touches only the nodes within
``6 * sigma`` cells of the winner, where the Gaussian is above ``exp(-18)``; the
winner search still scans the whole grid, so a step costs
``O(side^2 * n_features)`` and ``10 * n`` steps cost ``O(n^2 * n_features)``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from topojax.layout.base import Layout, check_features, make_layout, prepare

# Radius, in grid cells, of the circle on which neurons sharing a node sit.
_SPREAD_RADIUS = 0.2


def som_grid_side(n_neurons: int) -> int:
    """Side of the paper's square SOM grid: ``int(sqrt(n)) + 1``, at least 2."""
    return max(2, math.isqrt(n_neurons) + 1)


def _grid(side: int) -> jax.Array:
    """``(side * side, 2)`` float32 grid positions, ``(m // side, m % side)``."""
    rows, cols = jnp.meshgrid(jnp.arange(side), jnp.arange(side), indexing="ij")
    return jnp.stack([rows.ravel(), cols.ravel()], axis=1).astype(jnp.float32)


def neighbourhood_radius(sigma: float) -> int:
    """Grid radius beyond which the Gaussian neighbourhood is dropped.

    At ``6 * sigma`` cells the Gaussian is ``exp(-18) < 2e-8`` of its peak,
    below float32 resolution for the weight change, so updating only a
    ``(2r + 1)^2`` window around the winner gives the same weights as updating
    the whole grid (up to rounding).
    """
    return max(1, math.ceil(6.0 * sigma))


@functools.partial(jax.jit, static_argnames=("side", "radius"))
def train_som(
    x: jax.Array,
    weights: jax.Array,
    order: jax.Array,
    *,
    side: int,
    radius: int,
    sigma: float | jax.Array = 1.0,
    learning_rate: float | jax.Array = 0.5,
) -> jax.Array:
    """Train a SOM online on the rows of ``x``, like MiniSom's ``train``.

    Step ``t`` of ``n_iter = len(order)`` takes row ``order[t]``, finds the
    winning node ``c`` (smallest Euclidean distance) and adds
    ``eta(t) * exp(-|g - g_c|^2 / (2 sigma(t)^2)) * (x - w_g)`` to every node
    ``g`` within ``radius`` cells of ``c`` (per axis), with
    ``eta(t) = learning_rate / (1 + 2 t / n_iter)`` and likewise ``sigma(t)``.

    Args:
        x: ``(n, d)`` float32 training rows (already prepared for the metric).
        weights: ``(side * side, d)`` initial node weights.
        order: ``(n_iter,)`` int rows of ``x`` to visit, one per update.
        side: grid side; the map has ``side * side`` nodes.
        radius: neighbourhood cut-off in cells, see `neighbourhood_radius`.
        sigma: initial Gaussian neighbourhood width, in grid cells.
        learning_rate: initial learning rate.

    Returns:
        ``(side * side, d)`` trained node weights; node ``m`` sits at grid
        position ``(m // side, m % side)``.
    """
    d = x.shape[1]
    n_iter = order.shape[0]
    window = min(side, 2 * radius + 1)
    half = n_iter / 2
    offsets = jnp.arange(window)

    def step(carry, inputs):
        weights, sq_norms = carry
        t, row = inputs
        sample = x[row]
        # argmin |w - x|^2 = argmin |w|^2 - 2 w.x, with |w|^2 kept up to date.
        scores = sq_norms - 2.0 * jnp.einsum("ijd,d->ij", weights, sample)
        winner = jnp.argmin(scores.reshape(-1))
        win_i, win_j = winner // side, winner % side
        top = jnp.clip(win_i - radius, 0, side - window)
        left = jnp.clip(win_j - radius, 0, side - window)
        decay = 1.0 + t / half
        eta = learning_rate / decay
        width = sigma / decay
        along_i = jnp.exp(-((top + offsets - win_i) ** 2) / (2.0 * width * width))
        along_j = jnp.exp(-((left + offsets - win_j) ** 2) / (2.0 * width * width))
        pull = eta * along_i[:, None] * along_j[None, :]
        patch = jax.lax.dynamic_slice(weights, (top, left, 0), (window, window, d))
        patch = patch + pull[:, :, None] * (sample[None, None, :] - patch)
        weights = jax.lax.dynamic_update_slice(weights, patch, (top, left, 0))
        sq_norms = jax.lax.dynamic_update_slice(
            sq_norms, jnp.sum(patch * patch, axis=2), (top, left)
        )
        return (weights, sq_norms), None

    steps = jnp.arange(n_iter, dtype=jnp.float32)
    # Both kept as (side, side) grids: reshaping them every step costs copies.
    carry = (
        weights.reshape(side, side, d),
        jnp.sum(weights * weights, axis=1).reshape(side, side),
    )
    (weights, _), _ = jax.lax.scan(step, carry, (steps, order))
    return weights.reshape(side * side, d)


@functools.partial(jax.jit, static_argnames=("block_size",))
def winning_nodes(
    x: jax.Array, weights: jax.Array, *, block_size: int = 256
) -> jax.Array:
    """Index of the best-matching node of every row, in blocks of rows.

    Args:
        x: ``(n, d)`` rows.
        weights: ``(m, d)`` node weights.
        block_size: rows per block; memory is ``O(block_size * m)``.

    Returns:
        ``(n,)`` int32 node indices.
    """
    n = x.shape[0]
    block = min(block_size, n)
    n_blocks = -(-n // block)
    padded = jnp.pad(x, ((0, n_blocks * block - n), (0, 0)))
    weight_sq = jnp.sum(weights * weights, axis=1)

    def one_block(rows):
        # |x - w|^2 up to the per-row constant |x|^2.
        return jnp.argmin(weight_sq[None, :] - 2.0 * rows @ weights.T, axis=1)

    winners = jax.lax.map(one_block, padded.reshape(n_blocks, block, -1))
    return winners.reshape(-1)[:n].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("side",))
def spread_on_nodes(winners: jax.Array, key: jax.Array, *, side: int) -> jax.Array:
    """Grid position of each neuron's node, spreading neurons that share one.

    The ``c`` neurons on one node are placed at angles
    ``start + 2 * pi * r / c`` (``r = 0 .. c-1`` in neuron order) on a circle of
    radius 0.2 cells around it; ``start`` is drawn per node from ``key``.

    Args:
        winners: ``(n,)`` int node indices.
        key: PRNG key for the start angles.
        side: grid side.

    Returns:
        ``(n, 2)`` float32 grid coordinates.
    """
    n = winners.shape[0]
    n_nodes = side * side
    counts = jax.ops.segment_sum(jnp.ones(n, jnp.int32), winners, n_nodes)
    order = jnp.argsort(winners, stable=True)
    sorted_nodes = winners[order]
    first = jnp.searchsorted(sorted_nodes, sorted_nodes, side="left")
    rank = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n) - first)
    shared = counts[winners]
    start = jax.random.uniform(key, (n_nodes,), maxval=2.0 * jnp.pi)
    angle = start[winners] + 2.0 * jnp.pi * rank / shared
    radius = jnp.where(shared > 1, _SPREAD_RADIUS, 0.0)
    offset = radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    return _grid(side)[winners] + offset


def som_layout(
    features,
    *,
    key: jax.Array,
    metric: str = "cosine",
    n_iter: int | None = None,
    sigma: float = 1.0,
    learning_rate: float = 0.5,
    side: int | None = None,
) -> Layout:
    """Self-organising-map layout of neuron profiles (the paper's ``SOM``).

    Features are prepared for ``metric`` (cosine/correlation: unit rows) and the
    SOM compares them with Euclidean distance, as MiniSom does.

    Args:
        features: ``(n_neurons, n_features)``.
        key: PRNG key (initial weights, visiting order, spreading angles).
        metric: one of ``"cosine"``, ``"euclidean"``, ``"correlation"``.
        n_iter: online updates; default ``10 * n_neurons`` (10 epochs).
        sigma: initial neighbourhood width in grid cells (MiniSom default 1).
        learning_rate: initial learning rate (MiniSom default 0.5).
        side: grid side; default ``int(sqrt(n_neurons)) + 1``, at least 2.

    Returns:
        `Layout` with ``coords`` ``(n_neurons, 2)`` in ``[0, 1]^2``.

    Raises:
        ValueError: bad features or metric, ``n_iter < 1``, ``side < 1``, or
            ``sigma``/``learning_rate`` not positive.

    Example:
        >>> import jax, numpy as np
        >>> feats = np.random.default_rng(0).normal(size=(50, 10))
        >>> som_layout(feats, key=jax.random.key(0)).coords.shape
        (50, 2)
    """
    features = check_features(features, metric=metric)
    n = features.shape[0]
    n_iter = 10 * n if n_iter is None else n_iter
    side = som_grid_side(n) if side is None else side
    if not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive int; got {n_iter!r}")
    if not isinstance(side, int) or side < 1:
        raise ValueError(f"side must be a positive int; got {side!r}")
    if not sigma > 0 or not learning_rate > 0:
        raise ValueError(
            f"sigma and learning_rate must be > 0; got sigma={sigma!r}, "
            f"learning_rate={learning_rate!r}"
        )
    return _som(
        features,
        key,
        jnp.float32(sigma),
        jnp.float32(learning_rate),
        metric=metric,
        side=side,
        n_iter=n_iter,
        radius=neighbourhood_radius(sigma),
    )


@functools.partial(jax.jit, static_argnames=("metric", "side", "n_iter", "radius"))
def _som(
    features: jax.Array,
    key: jax.Array,
    sigma: jax.Array,
    learning_rate: jax.Array,
    *,
    metric: str,
    side: int,
    n_iter: int,
    radius: int,
) -> Layout:
    """The whole SOM layout as one compiled function (one compile per shape)."""
    n = features.shape[0]
    init_key, order_key, spread_key = jax.random.split(key, 3)
    x, _ = prepare(features, metric)
    # MiniSom's random_weights_init and train(random_order=True).
    weights = x[jax.random.randint(init_key, (side * side,), 0, n)]
    order = jax.random.permutation(order_key, jnp.arange(n_iter) % n)
    weights = train_som(
        x,
        weights,
        order,
        side=side,
        radius=radius,
        sigma=sigma,
        learning_rate=learning_rate,
    )
    winners = winning_nodes(x, weights)
    return make_layout(spread_on_nodes(winners, spread_key, side=side), "som")
