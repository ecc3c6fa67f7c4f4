"""How well a 2-D layout keeps the neighbourhoods of the neuron features.

All metrics work in blocks of rows, so memory is ``O(block_size * n)`` (times
``k`` for the rank counts), never ``(n, n)``; ``n = 16384`` fits easily.

- `trustworthiness`: are the map neighbours also feature neighbours? (Venna &
  Kaski; equals ``sklearn.manifold.trustworthiness``.)
- `continuity`: are the feature neighbours also map neighbours?
- `knn_recall`: fraction of the ``k`` nearest feature neighbours that are among
  the ``k`` nearest map neighbours.
- `distance_spearman`: rank correlation of feature and map distances over
  (sampled) pairs.
- `overlap`: fraction of neurons hidden by a very close map neighbour.
- `ground_truth_recall`: `knn_recall` against known true 2-D positions.
- `layout_report`: all of the above as a ``dict[str, float]``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from topojax.layout.base import (
    check_features,
    live_rows,
    pairwise_distances,
    prepare,
)

# Rank counts build a (block, k, n) boolean array per block.
_BLOCK = 128
# Below this many columns, Euclidean distances are computed from differences
# (exact for 2-D coordinates) instead of the Gram-matrix identity.
_DIRECT_MAX_DIM = 4
_DIRECT_MAX_ELEMENTS = 2**24


def _distances(rows: jax.Array, points: jax.Array, metric: str) -> jax.Array:
    """``(b, n)`` distances.

    Euclidean distances come from differences where that is affordable (exact
    ranks for near-ties, where the Gram-matrix identity loses precision).
    """
    if metric == "euclidean":
        dim = points.shape[1]
        if dim <= _DIRECT_MAX_DIM:
            # One (b, n) plane per axis: far faster on CPU than a (b, n, dim) array.
            columns = points.T
            squared = sum(
                (rows[:, axis, None] - columns[None, axis]) ** 2 for axis in range(dim)
            )
            return jnp.sqrt(squared)
        if rows.shape[0] * points.shape[0] * dim <= _DIRECT_MAX_ELEMENTS:
            diff = rows[:, None, :] - points[None, :, :]
            return jnp.sqrt(jnp.sum(diff * diff, axis=-1))
    return pairwise_distances(rows, points, metric)


def _blocks(n: int, block_size: int) -> tuple[int, int]:
    block = min(block_size, n)
    return block, -(-n // block)


def _neighbours(points: jax.Array, k: int, metric: str, block_size: int) -> jax.Array:
    """``(n, k)`` indices of the ``k`` nearest other rows (lowest index on ties)."""
    n = points.shape[0]
    block, n_blocks = _blocks(n, block_size)
    padded = jnp.pad(points, ((0, n_blocks * block - n), (0, 0)))
    ids = jnp.arange(n_blocks * block).reshape(n_blocks, block)

    def one_block(args):
        rows, row_ids = args
        dist = _distances(rows, points, metric)
        dist = jnp.where(row_ids[:, None] == jnp.arange(n)[None, :], jnp.inf, dist)
        return jax.lax.top_k(-dist, k)[1]

    idx = jax.lax.map(one_block, (padded.reshape(n_blocks, block, -1), ids))
    return idx.reshape(-1, k)[:n]


@functools.partial(
    jax.jit, static_argnames=("k", "rank_metric", "neighbour_metric", "block_size")
)
def _rank_score(
    rank_space: jax.Array,
    neighbour_space: jax.Array,
    counted: jax.Array,
    *,
    k: int,
    rank_metric: str,
    neighbour_metric: str,
    block_size: int,
) -> jax.Array:
    """``1 - 2 / (n k (2n - 3k - 1)) * sum_i sum_{j in N_k(i)} max(r(i, j) - k, 0)``.

    ``N_k(i)``: the ``k`` nearest neighbours of ``i`` in ``neighbour_space``;
    ``r(i, j)``: the rank (1 = nearest) of ``j`` among the other rows by distance
    from ``i`` in ``rank_space``, ties broken by lower index. The sum and ``n``
    in front of it run over the rows with ``counted`` 1 (`base.live_rows`).
    """
    n = rank_space.shape[0]
    neighbours = _neighbours(neighbour_space, k, neighbour_metric, block_size)
    block, n_blocks = _blocks(n, block_size)
    pad = n_blocks * block - n
    rows = jnp.pad(rank_space, ((0, pad), (0, 0))).reshape(n_blocks, block, -1)
    ids = jnp.arange(n_blocks * block).reshape(n_blocks, block)
    nbrs = jnp.pad(neighbours, ((0, pad), (0, 0))).reshape(n_blocks, block, k)
    weights = jnp.pad(counted, (0, pad)).reshape(n_blocks, block)
    columns = jnp.arange(n)

    def one_block(args):
        rows, row_ids, nbrs, weights = args
        dist = _distances(rows, rank_space, rank_metric)
        dist = jnp.where(row_ids[:, None] == columns[None, :], jnp.inf, dist)
        to_nbr = jnp.take_along_axis(dist, nbrs, axis=1)
        closer = dist[:, None, :] < to_nbr[:, :, None]
        tied = (dist[:, None, :] == to_nbr[:, :, None]) & (
            columns[None, None, :] < nbrs[:, :, None]
        )
        rank = jnp.sum(closer | tied, axis=2) + 1
        excess = jnp.maximum(rank - k, 0).astype(jnp.float32)
        return jnp.sum(weights[:, None] * excess)

    total = jnp.sum(jax.lax.map(one_block, (rows, ids, nbrs, weights)))
    n_counted = jnp.maximum(jnp.sum(counted), 1.0)
    return 1.0 - total * (2.0 / (n_counted * k * (2.0 * n - 3.0 * k - 1.0)))


def _check_pair(features, coords, metric: str) -> tuple[jax.Array, jax.Array]:
    # Both are scaled by `check_features` (each by its largest absolute value):
    # the rank-based metrics ignore a global factor, so the scores of a rescaled
    # copy are the same and no distance overflows float32.
    features = check_features(features, metric=metric)
    coords = check_features(coords, metric="euclidean")
    if coords.shape[0] != features.shape[0]:
        raise ValueError(
            f"coords must have one row per neuron: features have "
            f"{features.shape[0]} rows, coords {coords.shape[0]}"
        )
    return features, coords


def _check_rank_k(k: int, n: int) -> None:
    if not isinstance(k, int) or k < 1 or k >= n / 2:
        raise ValueError(
            f"k must be an int with 1 <= k < n_neurons / 2 = {n / 2}; got {k!r}"
        )


def trustworthiness(
    features,
    coords,
    k: int = 10,
    *,
    metric: str = "cosine",
    block_size: int = _BLOCK,
) -> jax.Array:
    """Trustworthiness of a layout: penalises map neighbours that are far in features.

    Same value as ``sklearn.manifold.trustworthiness(features, coords,
    n_neighbors=k, metric=metric)``, computed in blocks of rows, except that
    under cosine or correlation dead neurons (all-zero profiles), whose
    neighbours are undefined, are left out of the average over neurons (they
    still count as far-away map neighbours of the others; see
    `topojax.layout.base.live_rows`). scikit-learn ranks their equidistant
    neighbours by index, which rewards layouts that stack dead neurons on one
    spot.

    Args:
        features: ``(n_neurons, n_features)``.
        coords: ``(n_neurons, dim)`` layout, usually ``dim = 2``.
        k: neighbours, ``1 <= k < n_neurons / 2``.
        metric: feature distance, one of `topojax.layout.METRICS`.
        block_size: rows per block.

    Returns:
        Scalar float32 in ``[0, 1]``; 1 means every map neighbourhood is a
        feature neighbourhood.

    Raises:
        ValueError: bad shapes, non-finite values, unknown metric or bad ``k``.
    """
    features, coords = _check_pair(features, coords, metric)
    _check_rank_k(k, features.shape[0])
    return _rank_score(
        features,
        coords,
        live_rows(features, metric),
        k=k,
        rank_metric=metric,
        neighbour_metric="euclidean",
        block_size=block_size,
    )


def continuity(
    features,
    coords,
    k: int = 10,
    *,
    metric: str = "cosine",
    block_size: int = _BLOCK,
) -> jax.Array:
    """Continuity of a layout: penalises feature neighbours that are far on the map.

    The mirror of `trustworthiness`: ranks are taken on the map and neighbours
    in feature space. Dead neurons' own rows are left out, as there.

    Args:
        features: ``(n_neurons, n_features)``.
        coords: ``(n_neurons, dim)`` layout.
        k: neighbours, ``1 <= k < n_neurons / 2``.
        metric: feature distance.
        block_size: rows per block.

    Returns:
        Scalar float32 in ``[0, 1]``.

    Raises:
        ValueError: bad shapes, non-finite values, unknown metric or bad ``k``.
    """
    features, coords = _check_pair(features, coords, metric)
    _check_rank_k(k, features.shape[0])
    return _rank_score(
        coords,
        features,
        live_rows(features, metric),
        k=k,
        rank_metric="euclidean",
        neighbour_metric=metric,
        block_size=block_size,
    )


@functools.partial(jax.jit, static_argnames=("k", "metric_a", "metric_b", "block_size"))
def _recall(
    a: jax.Array,
    b: jax.Array,
    counted: jax.Array,
    *,
    k: int,
    metric_a: str,
    metric_b: str,
    block_size: int,
) -> jax.Array:
    nbrs_a = _neighbours(a, k, metric_a, block_size)
    nbrs_b = _neighbours(b, k, metric_b, block_size)
    kept = jnp.any(nbrs_a[:, :, None] == nbrs_b[:, None, :], axis=2)
    per_row = jnp.mean(kept.astype(jnp.float32), axis=1)
    return jnp.sum(counted * per_row) / jnp.maximum(jnp.sum(counted), 1.0)


def _check_recall_k(k: int, n: int) -> None:
    if not isinstance(k, int) or k < 1 or k > n - 1:
        raise ValueError(
            f"k must be an int with 1 <= k <= n_neurons - 1 = {n - 1}; got {k!r}"
        )


def knn_recall(
    features,
    coords,
    k: int = 10,
    *,
    metric: str = "cosine",
    block_size: int = _BLOCK,
) -> jax.Array:
    """Fraction of each neuron's ``k`` nearest feature neighbours kept on the map.

    Args:
        features: ``(n_neurons, n_features)``.
        coords: ``(n_neurons, dim)`` layout.
        k: neighbours, ``1 <= k <= n_neurons - 1``.
        metric: feature distance.
        block_size: rows per block.

    Returns:
        Scalar float32 in ``[0, 1]``: the mean over neurons of
        ``|N_k^features(i) & N_k^map(i)| / k`` (dead neurons left out under
        cosine or correlation, as in `trustworthiness`). A random layout scores
        about ``k / (n_neurons - 1)``.

    Raises:
        ValueError: bad shapes, non-finite values, unknown metric or bad ``k``.
    """
    features, coords = _check_pair(features, coords, metric)
    _check_recall_k(k, features.shape[0])
    return _recall(
        features,
        coords,
        live_rows(features, metric),
        k=k,
        metric_a=metric,
        metric_b="euclidean",
        block_size=block_size,
    )


def ground_truth_recall(
    true_coords, coords, k: int = 10, *, block_size: int = _BLOCK
) -> jax.Array:
    """`knn_recall` against known true positions (e.g. a synthetic sheet).

    Args:
        true_coords: ``(n_neurons, dim)`` true positions (Euclidean).
        coords: ``(n_neurons, 2)`` layout.
        k: neighbours, ``1 <= k <= n_neurons - 1``.
        block_size: rows per block.

    Returns:
        Scalar float32 in ``[0, 1]``.

    Raises:
        ValueError: bad shapes, non-finite values or bad ``k``.
    """
    true_coords, coords = _check_pair(true_coords, coords, "euclidean")
    _check_recall_k(k, true_coords.shape[0])
    return _recall(
        true_coords,
        coords,
        jnp.ones(true_coords.shape[:1], jnp.float32),
        k=k,
        metric_a="euclidean",
        metric_b="euclidean",
        block_size=block_size,
    )


def _average_ranks(values: jax.Array) -> jax.Array:
    """1-based ranks, ties given their mean rank (like `scipy.stats.rankdata`)."""
    ordered = jnp.sort(values)
    low = jnp.searchsorted(ordered, values, side="left")
    high = jnp.searchsorted(ordered, values, side="right")
    return (low + high + 1) / 2.0


def _pearson(a: jax.Array, b: jax.Array) -> jax.Array:
    a = a - a.mean()
    b = b - b.mean()
    return jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))


_PAIR_CHUNK = 16384


def _pair_distances(
    points: jax.Array, first: jax.Array, second: jax.Array, metric: str
) -> jax.Array:
    """Distances between rows ``first[p]`` and ``second[p]``, in chunks of pairs."""
    prepared, _ = prepare(points, metric)
    n_pairs = first.shape[0]
    chunk = min(_PAIR_CHUNK, n_pairs)
    n_chunks = -(-n_pairs // chunk)
    pad = n_chunks * chunk - n_pairs

    def one_chunk(ij):
        a, b = prepared[ij[0]], prepared[ij[1]]
        if metric == "euclidean":
            return jnp.sqrt(jnp.sum((a - b) ** 2, axis=1))
        return jnp.clip(1.0 - jnp.sum(a * b, axis=1), 0.0, 2.0)

    pairs = (
        jnp.pad(first, (0, pad)).reshape(n_chunks, chunk),
        jnp.pad(second, (0, pad)).reshape(n_chunks, chunk),
    )
    return jax.lax.map(one_chunk, pairs).reshape(-1)[:n_pairs]


@functools.partial(jax.jit, static_argnames=("metric", "n_pairs"))
def _spearman(
    features: jax.Array, coords: jax.Array, key: jax.Array, *, metric: str, n_pairs: int
) -> jax.Array:
    n = features.shape[0]
    if n * (n - 1) // 2 <= n_pairs:
        first, second = (jnp.asarray(i) for i in np.triu_indices(n, k=1))
    else:
        first_key, offset_key = jax.random.split(key)
        first = jax.random.randint(first_key, (n_pairs,), 0, n)
        second = (first + jax.random.randint(offset_key, (n_pairs,), 1, n)) % n
    high = _pair_distances(features, first, second, metric)
    low = _pair_distances(coords, first, second, "euclidean")
    return _pearson(_average_ranks(high), _average_ranks(low))


def distance_spearman(
    features,
    coords,
    *,
    key: jax.Array,
    metric: str = "cosine",
    n_pairs: int = 200_000,
) -> jax.Array:
    """Spearman rank correlation between feature and map distances.

    Uses every pair when there are at most ``n_pairs`` of them (then it equals
    ``scipy.stats.spearmanr(pdist(features, metric), pdist(coords))``), else
    ``n_pairs`` random pairs of distinct neurons drawn with ``key``.

    Args:
        features: ``(n_neurons, n_features)``, ``n_neurons >= 2``.
        coords: ``(n_neurons, dim)`` layout.
        key: PRNG key for the sampled pairs.
        metric: feature distance.
        n_pairs: most pairs used.

    Returns:
        Scalar float32 in ``[-1, 1]`` (NaN if either distance set is constant).

    Raises:
        ValueError: bad shapes, non-finite values, unknown metric, fewer than 2
            neurons or ``n_pairs < 1``.
    """
    features, coords = _check_pair(features, coords, metric)
    if features.shape[0] < 2:
        raise ValueError(
            f"distance_spearman needs at least 2 neurons; got {features.shape[0]}"
        )
    if not isinstance(n_pairs, int) or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive int; got {n_pairs!r}")
    return _spearman(features, coords, key, metric=metric, n_pairs=n_pairs)


@functools.partial(jax.jit, static_argnames=("block_size",))
def _overlap(coords: jax.Array, *, block_size: int) -> jax.Array:
    n = coords.shape[0]
    nearest = _neighbours(coords, 1, "euclidean", block_size)[:, 0]
    gap = jnp.sqrt(jnp.sum((coords - coords[nearest]) ** 2, axis=1))
    return jnp.mean((gap < 0.25 / jnp.sqrt(n)).astype(jnp.float32))


def overlap(coords, *, block_size: int = _BLOCK) -> jax.Array:
    """Fraction of neurons with a map neighbour closer than ``0.25 / sqrt(n)``.

    On a unit-square map with ``n`` neurons the typical spacing is about
    ``1 / sqrt(n)``; a neighbour within a quarter of that hides the neuron in a
    rendered map.

    Args:
        coords: ``(n_neurons, 2)`` layout in the unit square.
        block_size: rows per block.

    Returns:
        Scalar float32 in ``[0, 1]`` (0 for a single neuron).

    Raises:
        ValueError: not 2-D, non-finite or beyond the float32 range (coordinates
            are not rescaled: the threshold is absolute).
    """
    coords = check_features(coords, metric="euclidean", scale=False)
    if coords.shape[0] < 2:
        return jnp.float32(0.0)
    return _overlap(coords, block_size=block_size)


def layout_report(
    features,
    coords,
    *,
    key: jax.Array,
    metric: str = "cosine",
    k: int = 10,
    true_coords=None,
) -> dict[str, float]:
    """All layout-quality metrics as plain floats, for the CLI, gallery and bench.

    ``k`` is lowered to ``(n - 1) // 2`` for small layers (trustworthiness needs
    ``k < n / 2``); metrics that cannot be computed (fewer than 3 neurons) are NaN.

    Args:
        features: ``(n_neurons, n_features)``.
        coords: ``(n_neurons, 2)`` layout.
        key: PRNG key for the sampled pairs of `distance_spearman`.
        metric: feature distance.
        k: neighbours.
        true_coords: optional ``(n_neurons, dim)`` true positions; adds
            ``"gt_recall"``.

    Returns:
        ``{"k", "trustworthiness", "continuity", "knn_recall", "spearman",
        "overlap"[, "gt_recall"]}``.
    """
    raw_coords = coords
    features, coords = _check_pair(features, coords, metric)
    n = features.shape[0]
    k_used = min(k, (n - 1) // 2)
    nan = float("nan")
    report = {"k": float(k_used)}
    if k_used >= 1:
        report["trustworthiness"] = float(
            trustworthiness(features, coords, k_used, metric=metric)
        )
        report["continuity"] = float(
            continuity(features, coords, k_used, metric=metric)
        )
        report["knn_recall"] = float(
            knn_recall(features, coords, k_used, metric=metric)
        )
    else:
        report.update(trustworthiness=nan, continuity=nan, knn_recall=nan)
    report["spearman"] = (
        float(distance_spearman(features, coords, key=key, metric=metric))
        if n >= 2
        else nan
    )
    report["overlap"] = float(overlap(raw_coords))  # absolute: not rescaled
    if true_coords is not None:
        report["gt_recall"] = (
            float(ground_truth_recall(true_coords, coords, k_used))
            if k_used >= 1
            else nan
        )
    return report
