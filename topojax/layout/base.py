"""The layout contract shared by every method.

The `Layout` pytree, input checks, distances, blocked k-nearest neighbours and
rescaling to the unit square.

Every layout method has the signature::

    fn(features, *, key, metric="cosine", **options) -> Layout

where ``features`` is ``(n_neurons, n_features)`` (one row per neuron: its profile
over groups, or its raw activations over samples) and the returned
``Layout.coords`` is ``(n_neurons, 2)`` float32 in ``[0, 1]^2``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np

from topojax._env import shield_numpy_f2py

# The first topojax module imported by `import topojax`, and imported before
# SciPy: an invalid SOURCE_DATE_EPOCH must not break the import (`topojax._env`).
shield_numpy_f2py()

Metric = Literal["cosine", "euclidean", "correlation"]
METRICS: tuple[str, ...] = get_args(Metric)

# Rows with a norm below this are "dead" neurons (all-zero profiles); the paper
# adds 1e-15 to avoid NaN cosine distances, we give them a defined distance.
_EPS = 1e-12


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["coords", "trajectory", "losses"],
    meta_fields=["method"],
)
@dataclasses.dataclass(frozen=True)
class Layout:
    """2-D positions of the neurons of one layer.

    Attributes:
        coords: ``(n_neurons, 2)`` float32 positions in ``[0, 1]^2``.
        method: name of the method that made it (static metadata), e.g.
            ``"umap+swarm"``.
        trajectory: optional ``(n_frames, n_neurons, 2)`` positions during the
            optimisation, for methods that iterate and were asked for it.
        losses: optional ``(n_steps,)`` objective values, for methods that
            minimise an objective.
    """

    coords: jax.Array
    method: str
    trajectory: jax.Array | None = None
    losses: jax.Array | None = None

    @property
    def n_neurons(self) -> int:
        """Number of neurons laid out."""
        return self.coords.shape[0]


def check_metric(metric: str) -> None:
    """Raise a ValueError naming the valid metrics if ``metric`` is unknown."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {list(METRICS)}")


def check_features(
    features, *, metric: str = "cosine", scale: bool = True
) -> jax.Array:
    """Validate a feature matrix on the host, before any compute, and scale it.

    This is the one place where layout inputs are scaled: every layout method
    and every layout-quality metric calls it. With ``scale`` (the default) the
    features are divided by their largest absolute value in float64 (in the
    input's own precision when that is wider) before the cast to float32, so
    the largest entry has magnitude 1. Every metric in `METRICS` ignores a
    global factor, so any finite input, whatever its magnitude (float64 up to
    ``1e308``), gives the same layout as a rescaled copy of it; without the
    scaling, squared distances overflow float32 above about ``1e19`` and
    underflow below about ``1e-19``. A neuron whose row norm is below ``1e-12``
    of the largest entry counts as dead under cosine and correlation.

    Args:
        features: array-like ``(n_neurons, n_features)``.
        metric: distance name, checked against `METRICS`.
        scale: divide by the largest absolute value (keep False for
            coordinates, whose absolute size matters).

    Returns:
        The (scaled) features as a float32 ``jax.Array``.

    Raises:
        ValueError: not 2-D, no neurons, no features, not real numbers, NaN/Inf,
            values beyond the float32 range with ``scale=False``, or an unknown
            metric.
    """
    check_metric(metric)
    array = np.asarray(features)
    if array.ndim != 2:
        raise ValueError(
            f"features must be 2-D (n_neurons, n_features); got shape {array.shape}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            "features must have at least one neuron and one feature; "
            f"got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"features must be real numbers; got dtype {array.dtype}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(
            f"features contain {int(bad.sum())} non-finite values (NaN/Inf) in "
            f"{int(bad.any(axis=1).sum())} neurons; expected finite numbers"
        )
    wide = array.astype(np.result_type(array.dtype, np.float64), copy=False)
    largest = np.max(np.abs(wide))
    if scale and largest > 0:
        wide = wide / largest
    elif largest > np.finfo(np.float32).max:
        too_big = np.abs(wide) > np.finfo(np.float32).max
        raise ValueError(
            f"{int(too_big.sum())} values exceed the float32 range "
            f"(|x| > {float(np.finfo(np.float32).max):.3g}); the largest is "
            f"{float(largest):.3g}"
        )
    return jnp.asarray(wide.astype(np.float32))


def prepare(features: jax.Array, metric: str) -> tuple[jax.Array, str]:
    """Transform features so that the metric becomes (squared) Euclidean.

    cosine: rows scaled to unit norm (dead rows stay zero); correlation: rows
    centred, then unit norm; euclidean: unchanged. With unit rows,
    ``|a - b|^2 = 2 * cosine_distance(a, b)``, so every method can work with
    Euclidean geometry on the prepared rows.

    Args:
        features: ``(n, d)`` float array.
        metric: one of `METRICS`.

    Returns:
        ``(prepared, metric)``.
    """
    check_metric(metric)
    if metric == "correlation":
        features = features - features.mean(axis=1, keepdims=True)
    if metric in ("cosine", "correlation"):
        norms = jnp.linalg.norm(features, axis=1, keepdims=True)
        features = features / jnp.maximum(norms, _EPS)
    return features, metric


def live_rows(features: jax.Array, metric: str) -> jax.Array:
    """``(n,)`` float32: 1 for neurons with a direction, 0 for dead ones.

    Under cosine or correlation a dead neuron (all-zero profile; constant for
    correlation) has no direction: it is at distance 1 from every neuron, so
    it has no nearest neighbours of its own. Under Euclidean every row is live.
    """
    if metric == "euclidean":
        return jnp.ones(features.shape[:1], jnp.float32)
    unit, _ = prepare(features, metric)
    return (jnp.sum(unit**2, axis=1) > 0.5).astype(jnp.float32)


def flag_dead(features: jax.Array, metric: str) -> tuple[jax.Array, str]:
    """Features on which dead neurons are neighbours of each other only.

    Under cosine or correlation a dead (all-zero) neuron is at distance 1 from
    every neuron, itself included, so its nearest "neighbours" would be
    arbitrary live neurons. This returns unit rows plus a flag column (1 for
    dead rows) with the metric ``"cosine"``: dead neurons become identical to
    each other (distance 0, as scikit-learn and umap-learn see ``x + 1e-15``)
    and stay at distance 1 from live ones; live-live distances are unchanged.
    Euclidean features are returned unchanged.

    Returns:
        ``(features, metric)`` to use instead.
    """
    if metric == "euclidean":
        return features, metric
    unit, _ = prepare(features, metric)
    dead = 1.0 - live_rows(features, metric)[:, None]
    return jnp.concatenate([unit, dead.astype(unit.dtype)], axis=1), "cosine"


def pairwise_distances(x: jax.Array, y: jax.Array, metric: str) -> jax.Array:
    """Distances between the rows of ``x`` ``(n, d)`` and ``y`` ``(m, d)``.

    Uses one matrix product (no ``(n, m, d)`` intermediate) at full float32
    precision: on GPUs JAX's default would use TensorFloat-32 (10-bit
    mantissa), which reorders near neighbours (measured on an H100 at 16384
    neurons, k-NN and metrics both affected: kNN recall@10 of `optimize` 0.748
    with it, 0.786 without, as on the CPU). Cosine
    and correlation distances are ``1 - similarity``, with a zero row at
    similarity 0 to everything (distance 1), including itself.

    Returns:
        ``(n, m)`` float32 distances, >= 0.
    """
    px, _ = prepare(x, metric)
    py, _ = prepare(y, metric)
    gram = jnp.matmul(px, py.T, precision=jax.lax.Precision.HIGHEST)
    if metric == "euclidean":
        sq = (
            jnp.sum(px * px, axis=1)[:, None]
            + jnp.sum(py * py, axis=1)[None, :]
            - 2 * gram
        )
        return jnp.sqrt(jnp.maximum(sq, 0.0))
    return jnp.clip(1.0 - gram, 0.0, 2.0)


@functools.partial(jax.jit, static_argnames=("k", "metric", "block_size"))
def knn(
    features: jax.Array, k: int, metric: str = "cosine", block_size: int = 1024
) -> tuple[jax.Array, jax.Array]:
    """Exact k nearest neighbours of every row, excluding itself.

    Computed with blocked matrix products so that memory is
    ``O(block_size * n)``, never ``(n, n)`` at once.

    Args:
        features: ``(n, d)``.
        k: neighbours per row, ``1 <= k <= n - 1``.
        metric: one of `METRICS`.
        block_size: rows per block.

    Returns:
        ``(indices, distances)``, each ``(n, k)``, sorted by increasing distance.
    """
    n = features.shape[0]
    block = min(block_size, n)
    n_blocks = -(-n // block)
    padded = jnp.pad(features, ((0, n_blocks * block - n), (0, 0)))
    row_ids = jnp.arange(n_blocks * block).reshape(n_blocks, block)

    def one_block(args):
        rows, ids = args
        dist = pairwise_distances(rows, features, metric)
        dist = jnp.where(ids[:, None] == jnp.arange(n)[None, :], jnp.inf, dist)
        neg, idx = jax.lax.top_k(-dist, k)
        return idx, -neg

    idx, dist = jax.lax.map(one_block, (padded.reshape(n_blocks, block, -1), row_ids))
    return idx.reshape(-1, k)[:n], dist.reshape(-1, k)[:n]


def rescale_unit(coords: jax.Array, *, keep_aspect: bool = False) -> jax.Array:
    """Min-max scale each axis of ``coords`` ``(n, 2)`` to ``[0, 1]``.

    An axis with no spread (a single neuron, or all at one place) is put at 0.5.
    With ``keep_aspect``, both axes are scaled by the larger span and centred,
    so shapes (a disk) are not stretched.
    """
    lo = coords.min(axis=0)
    hi = coords.max(axis=0)
    span = hi - lo
    if keep_aspect:
        span = jnp.full_like(span, span.max())
    safe = jnp.where(span > 1e-12, span, 1.0)
    scaled = (coords - lo[None, :]) / safe[None, :]
    if keep_aspect:
        scaled = scaled + ((1.0 - (hi - lo) / safe) / 2)[None, :]
    return jnp.where((span > 1e-12)[None, :], scaled, 0.5).astype(jnp.float32)


def make_layout(
    coords: jax.Array,
    method: str,
    *,
    trajectory: jax.Array | None = None,
    losses: jax.Array | None = None,
) -> Layout:
    """Build a `Layout` from raw coordinates, rescaled to the unit square."""
    return Layout(
        coords=rescale_unit(coords),
        method=method,
        trajectory=trajectory,
        losses=losses,
    )


def initial_layout(
    features: jax.Array, init, *, key: jax.Array, metric: str, default: str = "pca"
) -> np.ndarray:
    """The layout a refinement starts from: coordinates, or a method to run.

    Args:
        features: checked ``(n_neurons, n_features)``.
        init: ``(n_neurons, 2)`` coordinates, a method name in
            ``topojax.layout.METHODS``, or None for ``default``.
        key: PRNG key for the method.
        metric: feature distance for the method.
        default: method used when ``init`` is None.

    Returns:
        ``(n_neurons, 2)`` float32 coordinates.

    Raises:
        ValueError: coordinates of the wrong shape or not finite.
    """
    if init is None or isinstance(init, str):
        from topojax.layout import get_method  # the registry imports this module

        init = get_method(init or default)(features, key=key, metric=metric).coords
    init = np.asarray(init, dtype=np.float32)
    if init.shape != (features.shape[0], 2):
        raise ValueError(
            f"init must have shape ({features.shape[0]}, 2); got {init.shape}"
        )
    if not np.isfinite(init).all():
        raise ValueError("init must contain finite coordinates")
    return init
