"""Threshold-graph layout (the paper's ``graph``), Fruchterman-Reingold in JAX.

Dead neurons (all-zero profiles) are first made each other's neighbours under
cosine or correlation (`base.flag_dead`), as the paper's ``x + 1e-15`` does.

1. The threshold ``t`` is the 7.5th percentile of the pairwise distances: exact
   over all pairs when there are at most ``n_sample_pairs`` of them, else
   estimated from that many random pairs (never an ``(n, n)`` matrix then).
2. Two neurons are joined when their distance is below ``t``. The edges come
   from the exact blocked k-nearest neighbours with ``k = min(n - 1,
   max_degree)``: the graph is the paper's threshold graph whenever no neuron
   has more than ``max_degree`` neighbours under ``t``; otherwise such a neuron
   keeps its ``max_degree`` nearest ones (memory ``O(n * max_degree)``), and an
   edge kept in only one of its two lists pulls only that end.
3. Connected components are found on the host with
   `scipy.sparse.csgraph.connected_components` (a one-off graph-building step,
   not part of the compiled layout); each smaller component is joined to the
   largest by one edge between their closest pair.
4. Fruchterman-Reingold as in networkx ``spring_layout`` at its defaults:
   ``k = 1/sqrt(n)``, 50 iterations, uniform random start in ``[0, 1)^2``,
   temperature ``0.1 * span`` falling linearly by ``span * 0.1 / (iters + 1)``,
   displacement lengths clipped below at 0.01 (networkx >= 3.5, gh-8113), stop
   once ``|step| / n < 1e-4``; this is networkx's ``method="force"``, which
   networkx >= 3.5 no longer picks by default for 500 nodes or more. The
   all-pairs repulsion is computed in blocks of rows (memory
   ``O(block_size * n)``, never ``(n, n, 2)``) inside one `jax.lax.scan`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from topojax.layout.base import (
    Layout,
    check_features,
    flag_dead,
    knn,
    make_layout,
    pairwise_distances,
    prepare,
)

# networkx's FR constants: minimum distance and displacement length (both 0.01),
# and the convergence threshold on |step| / n.
_MIN_DISTANCE = 0.01
_CONVERGED = 1e-4
_PAIR_CHUNK = 65536


def _pair_distance(a: jax.Array, b: jax.Array, metric: str) -> jax.Array:
    """Distance between matching rows of prepared ``a`` and ``b`` ``(m, d)``."""
    if metric == "euclidean":
        return jnp.sqrt(jnp.sum((a - b) ** 2, axis=1))
    return jnp.clip(1.0 - jnp.sum(a * b, axis=1), 0.0, 2.0)


@functools.partial(jax.jit, static_argnames=("metric", "n_sample_pairs"))
def distance_threshold(
    features: jax.Array,
    key: jax.Array,
    percentile: float | jax.Array = 7.5,
    *,
    metric: str = "cosine",
    n_sample_pairs: int = 1_000_000,
) -> jax.Array:
    """Percentile of the pairwise distances between the rows of ``features``.

    Exact (numpy's linear interpolation over all ``n (n - 1) / 2`` pairs) when
    that count is at most ``n_sample_pairs``; else estimated from
    ``n_sample_pairs`` random pairs of distinct rows, in chunks.

    Args:
        features: ``(n, d)`` with ``n >= 2``.
        key: PRNG key for the sampled pairs (unused when exact).
        percentile: in ``[0, 100]``.
        metric: one of `METRICS`.
        n_sample_pairs: largest number of pairs used.

    Returns:
        Scalar float32 threshold.
    """
    n = features.shape[0]
    n_pairs = n * (n - 1) // 2
    if n_pairs <= n_sample_pairs:
        rows, cols = np.triu_indices(n, k=1)
        condensed = pairwise_distances(features, features, metric)[rows, cols]
        return jnp.percentile(condensed, percentile)
    x, _ = prepare(features, metric)
    n_chunks = -(-n_sample_pairs // _PAIR_CHUNK)
    first_key, offset_key = jax.random.split(key)
    first = jax.random.randint(first_key, (n_chunks, _PAIR_CHUNK), 0, n)
    second = (first + jax.random.randint(offset_key, first.shape, 1, n)) % n
    sampled = jax.lax.map(
        lambda ij: _pair_distance(x[ij[0]], x[ij[1]], metric), (first, second)
    )
    return jnp.percentile(sampled.reshape(-1)[:n_sample_pairs], percentile)


@functools.partial(jax.jit, static_argnames=("metric", "block_size"))
def closest_in(
    features: jax.Array,
    targets: jax.Array,
    *,
    metric: str = "cosine",
    block_size: int = 256,
) -> tuple[jax.Array, jax.Array]:
    """For every row, its closest row among those flagged in ``targets``.

    Args:
        features: ``(n, d)``.
        targets: ``(n,)`` bool, at least one True.
        metric: one of `METRICS`.
        block_size: rows per block; memory ``O(block_size * n)``.

    Returns:
        ``(index, distance)``, each ``(n,)``: the closest target row (lowest
        index on ties) and its distance.
    """
    n = features.shape[0]
    block = min(block_size, n)
    n_blocks = -(-n // block)
    padded = jnp.pad(features, ((0, n_blocks * block - n), (0, 0)))

    def one_block(rows):
        dist = pairwise_distances(rows, features, metric)
        dist = jnp.where(targets[None, :], dist, jnp.inf)
        return jnp.argmin(dist, axis=1), jnp.min(dist, axis=1)

    index, distance = jax.lax.map(one_block, padded.reshape(n_blocks, block, -1))
    return index.reshape(-1)[:n], distance.reshape(-1)[:n]


def connect_components(
    features: jax.Array, neighbours: np.ndarray, edge_mask: np.ndarray, metric: str
) -> np.ndarray:
    """Edges that join every smaller connected component to the largest one.

    Runs on the host (scipy) once per layout: this is graph construction, not
    the compiled layout.

    Args:
        features: ``(n, d)``.
        neighbours: ``(n, k)`` int neighbour lists.
        edge_mask: ``(n, k)`` bool, which list entries are edges.
        metric: one of `METRICS`.

    Returns:
        ``(n_components - 1, 2)`` int edges ``(member of a smaller component,
        its closest neuron in the largest component)``, one per smaller component,
        each at that component's closest pair.
    """
    n = neighbours.shape[0]
    rows = np.repeat(np.arange(n), neighbours.shape[1])[edge_mask.ravel()]
    cols = neighbours.ravel()[edge_mask.ravel()]
    adjacency = scipy.sparse.coo_matrix(
        (np.ones(rows.size, np.int8), (rows, cols)), shape=(n, n)
    ).tocsr()
    n_components, labels = scipy.sparse.csgraph.connected_components(
        adjacency, directed=False
    )
    if n_components == 1:
        return np.zeros((0, 2), np.int64)
    largest = np.argmax(np.bincount(labels))
    target, distance = closest_in(
        features, jnp.asarray(labels == largest), metric=metric
    )
    target, distance = np.asarray(target), np.asarray(distance)
    outside = np.flatnonzero(labels != largest)
    # Per component, the member with the smallest distance (lowest index on ties).
    order = outside[np.lexsort((outside, distance[outside], labels[outside]))]
    first = np.concatenate([[True], labels[order][1:] != labels[order][:-1]])
    sources = order[first]
    return np.stack([sources, target[sources]], axis=1)


@functools.partial(jax.jit, static_argnames=("n_iter", "block_size"))
def fruchterman_reingold(
    init: jax.Array,
    neighbours: jax.Array,
    edge_mask: jax.Array,
    extra_edges: jax.Array,
    extra_mask: jax.Array,
    *,
    n_iter: int = 50,
    block_size: int = 128,
) -> jax.Array:
    """Fruchterman-Reingold layout with networkx's defaults and schedule.

    The displacement of node ``i`` is
    ``sum_j delta_ij * (k^2 / d_ij^2 - A_ij * d_ij / k)`` with
    ``delta_ij = x_i - x_j``, ``d_ij = max(|delta_ij|, 0.01)`` and
    ``k = 1 / sqrt(n)``; each node then moves by ``temperature`` along it.

    Args:
        init: ``(n, 2)`` start positions.
        neighbours: ``(n, k)`` int neighbour lists (``A_ij = 1`` for each
            masked entry ``j`` of row ``i``).
        edge_mask: ``(n, k)`` bool, which entries are edges.
        extra_edges: ``(m, 2)`` int undirected edges added in both directions.
        extra_mask: ``(m,)`` bool, which extra edges are real (the rest pad).
        n_iter: iterations.
        block_size: rows per block of the all-pairs repulsion.

    Returns:
        ``(n, 2)`` positions (not rescaled).
    """
    n = init.shape[0]
    k = 1.0 / jnp.sqrt(jnp.asarray(n, init.dtype))
    block = min(block_size, n)
    n_blocks = -(-n // block)
    pad = n_blocks * block - n
    row_neighbours = jnp.pad(neighbours, ((0, pad), (0, 0))).reshape(
        n_blocks, block, -1
    )
    row_mask = jnp.pad(edge_mask, ((0, pad), (0, 0))).reshape(n_blocks, block, -1)
    span = jnp.max(init.max(axis=0) - init.min(axis=0))
    temperature = 0.1 * span
    cooling = temperature / (n_iter + 1)

    def displacement(pos):
        # x and y kept as separate (rows, n) planes: CPU-friendly, no (b, n, 2).
        def one_block(args):
            rows, nbrs, mask = args
            dx = rows[:, 0:1] - pos[None, :, 0]
            dy = rows[:, 1:2] - pos[None, :, 1]
            push = k * k / jnp.maximum(dx * dx + dy * dy, _MIN_DISTANCE**2)
            ends = pos[nbrs]
            ex = rows[:, 0:1] - ends[..., 0]
            ey = rows[:, 1:2] - ends[..., 1]
            edge_dist = jnp.maximum(jnp.sqrt(ex * ex + ey * ey), _MIN_DISTANCE)
            pull = mask * edge_dist / k
            return jnp.stack(
                [
                    jnp.sum(dx * push, axis=1) - jnp.sum(ex * pull, axis=1),
                    jnp.sum(dy * push, axis=1) - jnp.sum(ey * pull, axis=1),
                ],
                axis=1,
            )

        rows = jnp.pad(pos, ((0, pad), (0, 0))).reshape(n_blocks, block, 2)
        disp = jax.lax.map(one_block, (rows, row_neighbours, row_mask))
        disp = disp.reshape(-1, 2)[:n]
        source, target = extra_edges[:, 0], extra_edges[:, 1]
        delta = pos[source] - pos[target]
        dist = jnp.maximum(jnp.linalg.norm(delta, axis=-1), _MIN_DISTANCE)
        pull = delta * (extra_mask * dist / k)[:, None]
        return disp.at[source].add(-pull).at[target].add(pull)

    def step(carry, _):
        pos, temperature, done = carry
        disp = displacement(pos)
        length = jnp.maximum(jnp.linalg.norm(disp, axis=-1), _MIN_DISTANCE)
        move = jnp.where(done, 0.0, disp * (temperature / length)[:, None])
        pos = pos + move
        done = done | (jnp.linalg.norm(move) / n < _CONVERGED)
        return (pos, temperature - cooling, done), None

    (pos, _, _), _ = jax.lax.scan(
        step, (init, temperature, jnp.array(False)), None, length=n_iter
    )
    return pos


def graph_layout(
    features,
    *,
    key: jax.Array,
    metric: str = "cosine",
    n_iter: int = 50,
    percentile: float = 7.5,
    max_degree: int = 1024,
    n_sample_pairs: int = 1_000_000,
    block_size: int = 128,
) -> Layout:
    """Threshold-graph + Fruchterman-Reingold layout (the paper's ``graph``).

    Args:
        features: ``(n_neurons, n_features)``.
        key: PRNG key (sampled pairs for the threshold, initial positions).
        metric: one of ``"cosine"``, ``"euclidean"``, ``"correlation"``.
        n_iter: Fruchterman-Reingold iterations (networkx default 50).
        percentile: distance percentile below which neurons are joined.
        max_degree: most edges kept per neuron (its nearest ones).
        n_sample_pairs: pairs used for the percentile; exact below this.
        block_size: rows per block in the repulsion.

    Returns:
        `Layout` with ``coords`` ``(n_neurons, 2)`` in ``[0, 1]^2``.

    Raises:
        ValueError: bad features or metric, or an option out of range.
    """
    features = check_features(features, metric=metric)
    for name, value in (
        ("n_iter", n_iter),
        ("max_degree", max_degree),
        ("n_sample_pairs", n_sample_pairs),
        ("block_size", block_size),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100]; got {percentile!r}")
    n = features.shape[0]
    # Dead neurons are each other's neighbours (as in the paper, which adds
    # 1e-15 to every profile), not isolated components joined at random.
    features, metric = flag_dead(features, metric)
    neighbours, edge_mask = threshold_graph(
        features,
        key,
        jnp.float32(percentile),
        metric=metric,
        max_degree=max_degree,
        n_sample_pairs=n_sample_pairs,
    )
    connectors = connect_components(
        features, np.asarray(neighbours), np.asarray(edge_mask), metric
    )
    # Padded to n rows so the compiled layout depends on n only.
    extra_edges = np.zeros((n, 2), np.int32)
    extra_edges[: len(connectors)] = connectors
    extra_mask = np.arange(n) < len(connectors)
    return _force_layout(
        key,
        neighbours,
        edge_mask,
        jnp.asarray(extra_edges),
        jnp.asarray(extra_mask),
        n_iter=n_iter,
        block_size=block_size,
    )


@functools.partial(jax.jit, static_argnames=("metric", "max_degree", "n_sample_pairs"))
def threshold_graph(
    features: jax.Array,
    key: jax.Array,
    percentile: float | jax.Array = 7.5,
    *,
    metric: str = "cosine",
    max_degree: int = 1024,
    n_sample_pairs: int = 1_000_000,
) -> tuple[jax.Array, jax.Array]:
    """The threshold graph as neighbour lists (see the module docstring).

    Args:
        features: ``(n, d)``.
        key: PRNG key for the sampled pairs of `distance_threshold`.
        percentile: distance percentile below which neurons are joined.
        metric: one of `METRICS`.
        max_degree: most neighbours kept per neuron.
        n_sample_pairs: pairs used for the percentile.

    Returns:
        ``(neighbours, edge_mask)``, each ``(n, min(n - 1, max_degree))`` (at
        least one column): the nearest neurons of each neuron and whether each
        is closer than the threshold.
    """
    n = features.shape[0]
    threshold_key, _ = jax.random.split(key)
    if n >= 2:
        threshold = distance_threshold(
            features,
            threshold_key,
            percentile,
            metric=metric,
            n_sample_pairs=n_sample_pairs,
        )
    else:
        threshold = jnp.float32(0.0)
    neighbours, distances = knn(features, max(1, min(n - 1, max_degree)), metric)
    return neighbours, distances < threshold


@functools.partial(jax.jit, static_argnames=("n_iter", "block_size"))
def _force_layout(
    key: jax.Array,
    neighbours: jax.Array,
    edge_mask: jax.Array,
    extra_edges: jax.Array,
    extra_mask: jax.Array,
    *,
    n_iter: int,
    block_size: int,
) -> Layout:
    """Random start, `fruchterman_reingold`, rescaling: one compiled function."""
    _, init_key = jax.random.split(key)
    init = jax.random.uniform(init_key, (neighbours.shape[0], 2))
    coords = fruchterman_reingold(
        init,
        neighbours,
        edge_mask,
        extra_edges,
        extra_mask,
        n_iter=n_iter,
        block_size=block_size,
    )
    return make_layout(coords, "graph")
