"""Differentiable layout objectives: plain scalar functions of the coordinates.

Every objective here is a pure function ``f(coords, ...) -> scalar`` of the
neuron positions ``coords`` ``(n_neurons, 2)`` and of precomputed data
(neighbour affinities, a radius, a key), differentiable with respect to
``coords``. They compose by weighted sum (`weighted_sum`) and are minimised by
`topojax.layout.optimize.optimize` with any optax optimiser; researchers can use
them as building blocks, e.g. `map_smoothness` as a topographic regulariser of a
hidden layer while training a network.

Terms (``y_i`` is the position of neuron ``i``, ``d_ij = |y_i - y_j|``):

* `attraction`: ``-sum_e w_e log k(d_{i_e j_e})`` over affinity edges, the
  attractive part of the t-SNE Kullback-Leibler divergence with a Student-t
  kernel ``k`` of scale ``s``.
* `repulsion` / `sampled_repulsion`: ``log Z`` with
  ``Z = sum_{i != j} k(d_ij)``, the normaliser of the t-SNE
  kernel; ``attraction + repulsion`` is ``KL(P || Q)`` up to a constant.
  Exact (blocked, memory ``O(block * n)``) or estimated from random pairs;
  ``k(d) = (1 + d^2 / (a s^2))^(-a)`` with ``a`` degrees of freedom.
* `soft_core` / `soft_core_pairs`: ``(1/n) sum_{i<j} (1 - d_ij^2 / r^2)_+^2``, a
  short-range repulsion that is zero beyond radius ``r`` and so targets the
  overlap of neurons directly without distorting larger distances.
* `false_neighbours`: ``(1/n) sum_{i<j} e_ij (1 - d_ij^2 / R^2)_+^2`` with
  ``e_ij`` the rank excess of the pair in feature space: map neighbours that
  are no feature neighbours cost (a smooth trustworthiness penalty).
* `boundary`: ``(1/n) sum_i dist(y_i, Omega)^2``, zero inside the unit square
  (or the disk of radius 1/2 centred at (1/2, 1/2)).
* `uniformity`: the sliced Wasserstein-2 distance between the positions and the
  uniform distribution on the square (or disk), using the exact quantile
  function of the projected uniform distribution.
* `map_smoothness`: ``sum_e w_e mean_b (z_{b i} - z_{b j})^2`` for normalised
  activations ``z`` of neurons that are neighbours on a fixed map;
  differentiable with respect to the activations (a topographic regulariser).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp

Shape = Literal["square", "disk"]

# Added to squared distances so that gradients stay finite at coincident points.
_TINY = 1e-12


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["indices", "weights"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class Affinities:
    """A sparse affinity edge list in fixed-degree form: edges ``(i, indices[i, m])``.

    The weights sum to 1. For a symmetric kernel ``f`` the directed list
    represents the symmetric joint matrix ``P_ij = (p_{j|i} + p_{i|j}) / (2n)``,
    because ``sum_ij P_ij f_ij = sum_{i, m} w_im f(i, indices[i, m])`` with
    ``w_im = p_{j|i} / n``. Never an ``(n, n)`` matrix.

    Attributes:
        indices: ``(n, k)`` int32 neighbour of each edge (row ``i`` is its source).
        weights: ``(n, k)`` float32 non-negative weights, summing to 1.
    """

    indices: jax.Array
    weights: jax.Array


def _calibrate_row(sq_dist: jax.Array, log_perplexity: jax.Array) -> jax.Array:
    """Conditional probabilities of one row with the given perplexity.

    Bisection on ``log beta`` of ``p_j ∝ exp(-beta (d_j - min d))`` until the
    Shannon entropy equals ``log_perplexity``. Distances are rescaled by their
    mean spread so that one bracket fits every row.
    """
    shifted = sq_dist - sq_dist.min()
    spread = jnp.maximum(shifted.mean(), 1e-12)
    shifted = shifted / spread

    def probs(log_beta):
        logits = -jnp.exp(log_beta) * shifted
        return jax.nn.softmax(logits)

    def entropy(log_beta):
        p = probs(log_beta)
        return -jnp.sum(p * jnp.log(jnp.maximum(p, 1e-30)))

    def body(_, bracket):
        lo, hi = bracket
        mid = (lo + hi) / 2
        # Entropy decreases with beta: too high entropy -> raise beta.
        too_flat = entropy(mid) > log_perplexity
        return jnp.where(too_flat, mid, lo), jnp.where(too_flat, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 64, body, (jnp.float32(-20.0), jnp.float32(20.0)))
    return probs((lo + hi) / 2)


@jax.jit
def perplexity_affinities(
    indices: jax.Array, sq_distances: jax.Array, perplexity: float | jax.Array
) -> Affinities:
    """t-SNE affinities on a k-nearest-neighbour graph.

    ``p_{j|i} = exp(-beta_i d_ij^2) / sum_{l in kNN(i)} exp(-beta_i d_il^2)``
    with ``beta_i`` set by bisection so that the perplexity
    ``exp(H(p_{.|i}))`` equals ``perplexity`` (clipped to ``[1, k]``), and
    ``w = p_{j|i} / n`` (see `Affinities`).

    Args:
        indices: ``(n, k)`` int neighbour indices (e.g. from `knn`).
        sq_distances: ``(n, k)`` squared high-dimensional distances.
        perplexity: effective number of neighbours, ``> 0``.

    Returns:
        `Affinities` with ``n * k`` edges.
    """
    n, k = indices.shape
    log_perplexity = jnp.log(jnp.clip(perplexity, 1.0, k))
    cond = jax.vmap(_calibrate_row, in_axes=(0, None))(sq_distances, log_perplexity)
    return Affinities(
        indices=indices.astype(jnp.int32), weights=(cond / n).astype(jnp.float32)
    )


def knn_affinities(indices: jax.Array) -> Affinities:
    """Uniform affinities ``w = 1 / (n k)`` on a k-nearest-neighbour graph.

    Args:
        indices: ``(n, k)`` int neighbour indices.

    Returns:
        `Affinities` with ``n * k`` edges of equal weight.
    """
    n, k = indices.shape
    return Affinities(
        indices=indices.astype(jnp.int32),
        weights=jnp.full((n, k), 1.0 / (n * k), jnp.float32),
    )


def _sq_dist(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.sum((a - b) ** 2, axis=-1)


def _neg_log_kernel(
    d2: jax.Array, scale: float | jax.Array, dof: float | jax.Array
) -> jax.Array:
    """``-log k(d)`` of the Student-t kernel ``k = (1 + d^2 / (a s^2))^(-a)``."""
    return dof * jnp.log1p(d2 / (dof * scale**2))


def attraction(
    coords: jax.Array,
    affinities: Affinities,
    *,
    scale: float | jax.Array,
    dof: float | jax.Array = 1.0,
) -> jax.Array:
    """Affinity-weighted Student-t attraction.

    ``A(y) = sum_e w_e a log(1 + |y_{i_e} - y_{j_e}|^2 / (a s^2))``, i.e.
    ``-sum_e w_e log k(d_e)`` for the kernel ``k(d) = (1 + d^2 / (a s^2))^(-a)``
    (``a = 1``: t-SNE's Cauchy kernel; larger ``a``: lighter tails, towards a
    Gaussian; smaller: heavier tails). It grows with the map distance of
    neurons with similar activity. Together with `repulsion` it is
    ``KL(P || Q)`` with ``Q ∝ k`` (up to the constant ``sum P log P``).

    Args:
        coords: ``(n, 2)`` positions.
        affinities: `Affinities` edges ``(i, j, w)``.
        scale: kernel scale ``s`` in coordinate units.
        dof: kernel degrees of freedom ``a > 0``.

    Returns:
        Scalar.
    """
    d2 = _sq_dist(coords[:, None, :], coords[affinities.indices])
    return jnp.sum(affinities.weights * _neg_log_kernel(d2, scale, dof))


def _plane_sq_dist(rows: jax.Array, coords: jax.Array) -> jax.Array:
    """``(b, n)`` squared distances from per-axis differences (no cancellation)."""
    dx = rows[:, 0:1] - coords[None, :, 0]
    dy = rows[:, 1:2] - coords[None, :, 1]
    return dx * dx + dy * dy


def _blocked_pair_sum(
    coords: jax.Array, pair_fn: Callable[[jax.Array], jax.Array], block_size: int
) -> jax.Array:
    """``sum_{i, j} pair_fn(|y_i - y_j|^2)`` over ordered pairs, self-pairs included.

    One dense ``(n, n)`` pass when ``n <= block_size``; otherwise row blocks under
    `jax.checkpoint`, so memory (also for the gradient) is ``O(block_size * n)``.
    """
    n = coords.shape[0]
    if n <= block_size:
        return jnp.sum(pair_fn(_plane_sq_dist(coords, coords)))
    n_blocks = -(-n // block_size)
    padded = jnp.pad(coords, ((0, n_blocks * block_size - n), (0, 0)))
    valid = jnp.arange(n_blocks * block_size) < n

    @jax.checkpoint
    def one_block(args):
        rows, row_valid = args
        values = pair_fn(_plane_sq_dist(rows, coords))
        return jnp.sum(jnp.where(row_valid[:, None], values, 0.0))

    blocks = (
        padded.reshape(n_blocks, block_size, 2),
        valid.reshape(n_blocks, block_size),
    )
    return jnp.sum(jax.lax.map(one_block, blocks))


def repulsion(
    coords: jax.Array,
    *,
    scale: float | jax.Array,
    dof: float | jax.Array = 1.0,
    block_size: int = 1024,
) -> jax.Array:
    """Exact normalised Student-t repulsion ``log Z``.

    ``Z = sum_{i != j} k(|y_i - y_j|)`` with ``k(d) = (1 + d^2 / (a s^2))^(-a)``
    (see `attraction`). Minimising ``log Z`` pushes all pairs apart, most
    strongly the close ones. Dense for ``n <= block_size``, else computed over
    row blocks with rematerialisation, so memory is ``O(block_size * n)``, never
    ``(n, n)``; compute is ``O(n^2)``.

    Args:
        coords: ``(n, 2)`` positions, ``n >= 2``.
        scale: kernel scale ``s``.
        dof: kernel degrees of freedom ``a > 0``.
        block_size: rows per block.

    Returns:
        Scalar.
    """
    n = coords.shape[0]
    total = _blocked_pair_sum(
        coords, lambda d2: jnp.exp(-_neg_log_kernel(d2, scale, dof)), block_size
    )
    # Remove the n self-pairs (kernel value 1 each).
    return jnp.log(jnp.maximum(total - n, 1e-30))


def random_offsets(key: jax.Array, n: int, shape: int | tuple[int, ...]) -> jax.Array:
    """Random index offsets in ``[1, n - 1]`` for `sampled_repulsion`.

    Args:
        key: PRNG key.
        n: number of neurons, ``>= 2``.
        shape: number (or array shape) of offsets drawn.

    Returns:
        int32 array of that shape.
    """
    return jax.random.randint(key, shape, 1, max(n, 2), dtype=jnp.int32)


def sampled_repulsion(
    coords: jax.Array,
    offsets: jax.Array,
    *,
    scale: float | jax.Array,
    dof: float | jax.Array = 1.0,
    near: jax.Array | None = None,
) -> jax.Array:
    """Estimate of `repulsion` from random pairs (negative sampling).

    ``log( n (n - 1) mean_{i, m} k(|y_i - y_{(i + o_m) mod n}|) )`` for random
    offsets ``o_m`` from `random_offsets`: every neuron meets ``len(offsets)``
    partners, each pair uniformly distributed over the distinct pairs, so the
    mean is an unbiased estimate of ``Z / (n (n - 1))``. Shifting by an offset
    is a roll of the rows, so no gather or scatter is needed. Memory and
    compute ``O(n * len(offsets))``.

    With ``near`` (each neuron's ``k`` feature neighbours, which end up close
    on the map and carry the largest kernel values), those ``n k`` ordered
    pairs are summed exactly and only the remaining ``n (n - 1 - k)`` are
    estimated, from the random pairs that are not among them: much less
    variance for the same cost (and exact when the offsets are all of
    ``1 .. n - 1``).

    Args:
        coords: ``(n, 2)`` positions.
        offsets: ``(m,)`` int offsets in ``[1, n - 1]``.
        scale: kernel scale ``s``.
        dof: kernel degrees of freedom ``a > 0``.
        near: optional ``(n, k)`` int neighbour indices summed exactly.

    Returns:
        Scalar.
    """
    n = coords.shape[0]

    def kernel(d2):
        return jnp.exp(-_neg_log_kernel(d2, scale, dof))

    if near is None:
        # Pair counts as floats: n (n - 1) overflows int32 from n = 46341 on.
        return jnp.log(float(n * (n - 1)) * _far_mean(coords, offsets, None, kernel))
    exact = jnp.sum(kernel(_sq_dist(coords[:, None, :], coords[near])))
    rest = float(n * (n - 1 - near.shape[1]))
    return jnp.log(exact + rest * _far_mean(coords, offsets, near, kernel))


def _far_mean(coords, offsets, near, kernel) -> jax.Array:
    """Mean kernel over the random pairs ``(i, i + offset)`` not in ``near[i]``.

    With every offset ``1 .. n - 1`` this is the exact mean over all pairs
    outside ``near`` (all pairs if ``near`` is None).
    """
    n = coords.shape[0]
    values = jax.vmap(
        lambda offset: kernel(_sq_dist(coords, jnp.roll(coords, -offset, axis=0)))
    )(offsets)
    if near is None:
        return jnp.mean(values)
    # Pair (i, i + o) is near when o is one of i's neighbour offsets.
    near_offsets = (near - jnp.arange(n)[:, None]) % n
    far = ~jnp.any(near_offsets[None, :, :] == offsets[:, None, None], axis=2)
    return jnp.sum(jnp.where(far, values, 0.0)) / jnp.maximum(jnp.sum(far), 1)


def sampled_kl(
    coords: jax.Array,
    affinities: Affinities,
    offsets: jax.Array,
    *,
    scale: float | jax.Array,
    dof: float | jax.Array = 1.0,
    attraction_weight: float | jax.Array = 1.0,
    repulsion_weight: float | jax.Array = 1.0,
) -> jax.Array:
    """``a * attraction + r * sampled_repulsion(near=...)`` in one pass.

    The same value as the two terms with the affinity neighbours as the exact
    ``near`` pairs, but the neighbours' distances are gathered once (and their
    gradient scattered once), which halves the cost of the neighbour pairs.

    Args:
        coords: ``(n, 2)`` positions.
        affinities: `Affinities`; their neighbours are the exact pairs.
        offsets: ``(m,)`` random offsets for the other pairs.
        scale: kernel scale ``s``.
        dof: kernel degrees of freedom ``a > 0``.
        attraction_weight: factor ``a`` on the attraction (e.g. times the
            early exaggeration).
        repulsion_weight: factor ``r`` on the repulsion.

    Returns:
        Scalar.
    """
    n, k = affinities.indices.shape
    neg_log = _neg_log_kernel(
        _sq_dist(coords[:, None, :], coords[affinities.indices]), scale, dof
    )
    attract = jnp.sum(affinities.weights * neg_log)

    def kernel(d2):
        return jnp.exp(-_neg_log_kernel(d2, scale, dof))

    far = _far_mean(coords, offsets, affinities.indices, kernel)
    normaliser = jnp.sum(jnp.exp(-neg_log)) + float(n * (n - 1 - k)) * far
    return attraction_weight * attract + repulsion_weight * jnp.log(normaliser)


def _core_penalty(d2: jax.Array, radius: float | jax.Array) -> jax.Array:
    return jnp.square(jnp.maximum(1.0 - d2 / radius**2, 0.0))


def soft_core(coords: jax.Array, *, radius: float, block_size: int = 1024) -> jax.Array:
    """Exact short-range soft-core repulsion.

    ``C(y) = (1/n) sum_{i<j} (1 - |y_i - y_j|^2 / r^2)_+^2``: zero for pairs
    farther apart than ``r``, growing smoothly (``C^1``) as two neurons
    approach; at ``r ~ 0.25 / sqrt(n)`` it removes overlaps. Blocked like
    `repulsion` (memory ``O(block_size * n)`` for ``n > block_size``).

    Args:
        coords: ``(n, 2)`` positions.
        radius: interaction radius ``r``.
        block_size: rows per block.

    Returns:
        Scalar.
    """
    n = coords.shape[0]
    total = _blocked_pair_sum(
        coords, functools.partial(_core_penalty, radius=radius), block_size
    )
    # Ordered pairs count each pair twice; the n self-pairs contribute 1 each.
    return (total - n) / (2 * n)


def soft_core_pairs(coords: jax.Array, pairs: jax.Array, *, radius: float) -> jax.Array:
    """`soft_core` restricted to candidate pairs (for large ``n``).

    ``(1/n) sum_{(i, j) in pairs} (1 - |y_i - y_j|^2 / r^2)_+^2`` with pairs
    from `grid_candidate_pairs`; equals `soft_core` when the candidates contain
    every pair closer than ``r`` exactly once.

    Args:
        coords: ``(n, 2)`` positions.
        pairs: ``(m, 2)`` int pairs.
        radius: interaction radius ``r``.

    Returns:
        Scalar.
    """
    d2 = _sq_dist(coords[pairs[:, 0]], coords[pairs[:, 1]])
    return jnp.sum(_core_penalty(d2, radius)) / coords.shape[0]


def rank_excess(ranks: jax.Array, k: int) -> jax.Array:
    """Weights ``e_ij = max(0, (r_ij + r_ji) / 2 - k) / n`` for `false_neighbours`.

    Args:
        ranks: ``(n, n)`` rank of ``j`` among the neighbours of ``i`` in
            feature space (1 = nearest; ``i`` itself 0).
        k: neighbourhood size that costs nothing.

    Returns:
        ``(n, n)`` float32, zero for mutual ``k``-nearest neighbours.
    """
    n = ranks.shape[0]
    mean_rank = 0.5 * (ranks + ranks.T).astype(jnp.float32)
    return jnp.maximum(mean_rank - k, 0.0) / n


def false_neighbours(
    coords: jax.Array, excess: jax.Array, *, radius: float | jax.Array
) -> jax.Array:
    """Precision term: penalise map neighbours that are far apart in feature space.

    ``F(y) = (1/n) sum_{i<j} e_ij (1 - |y_i - y_j|^2 / R^2)_+^2`` with ``e_ij``
    from `rank_excess`: a pair closer than ``R`` on the map costs in proportion
    to how far beyond the ``k`` nearest neighbours the two neurons rank each
    other in feature space. It is a smooth version of the penalty of
    trustworthiness (Venna & Kaski), the complement of the recall-oriented
    `attraction` (as the reverse divergence in NeRV). Dense: for small ``n``.

    Args:
        coords: ``(n, 2)`` positions.
        excess: ``(n, n)`` symmetric non-negative weights.
        radius: map neighbourhood radius ``R``.

    Returns:
        Scalar.
    """
    n = coords.shape[0]
    penalty = excess * _core_penalty(_plane_sq_dist(coords, coords), radius)
    # The diagonal of excess is zero; each pair appears twice.
    return jnp.sum(penalty) / (2 * n)


def false_neighbours_pairs(
    coords: jax.Array,
    pairs: jax.Array,
    excess: jax.Array,
    *,
    radius: float | jax.Array,
) -> jax.Array:
    """`false_neighbours` over candidate pairs (for large ``n``).

    ``(1/(2n)) sum_p e_p (1 - |y_{i_p} - y_{j_p}|^2 / R^2)_+^2`` over directed
    candidate pairs ``p`` (e.g. each neuron with its nearest map neighbours);
    equals `false_neighbours` when the candidates hold both directions of every
    pair closer than ``R``.

    Args:
        coords: ``(n, 2)`` positions.
        pairs: ``(m, 2)`` int pairs.
        excess: ``(m,)`` non-negative weights of the pairs.
        radius: map neighbourhood radius ``R``.

    Returns:
        Scalar.
    """
    d2 = _sq_dist(coords[pairs[:, 0]], coords[pairs[:, 1]])
    return jnp.sum(excess * _core_penalty(d2, radius)) / (2 * coords.shape[0])


def grid_candidate_pairs(
    coords: jax.Array,
    *,
    radius: float | jax.Array,
    window: int = 3,
    shifts: tuple[float, ...] = (0.0, 0.5),
) -> jax.Array:
    """Pairs of neurons that may be closer than ``radius``, in ``O(n log n)``.

    The plane is cut into square cells of side ``sqrt(2) radius``, once as is
    and once shifted by half a cell; the neurons are sorted by cell in
    row-major and in column-major order on both grids, and each neuron is
    paired with the next ``window`` neurons of each of the four orders. Two
    neurons closer than ``radius`` lie in the same or in horizontally or
    vertically adjacent cells of at least one grid (being diagonal in both
    would need both coordinate gaps above half a cell, i.e. a distance above
    ``radius``), so they are found unless more than ``window`` neurons sit
    between them in that order, which needs a crowd. Not differentiable
    (indices only).

    Args:
        coords: ``(n, 2)`` positions.
        radius: interaction radius.
        window: neighbours in sort order paired with each neuron.
        shifts: grid offsets in cells; ``(0.0,)`` halves the cost but misses
            some diagonal pairs.

    Returns:
        ``(2 * len(shifts) * n * window, 2)`` int32 pairs (some may repeat; pairs
        past the end
        of an order pair a neuron with itself, which contributes a constant and
        no gradient).
    """
    coords = jax.lax.stop_gradient(coords)
    n = coords.shape[0]
    scaled = coords / (jnp.sqrt(2.0) * radius)
    span = 1 << 15
    all_pairs = []
    for shift in shifts:
        cells = jnp.floor(scaled + shift).astype(jnp.int32)
        for major, minor in ((1, 0), (0, 1)):
            order = jnp.argsort(cells[:, major] * span + cells[:, minor])
            for offset in range(1, window + 1):
                partner = jnp.where(
                    jnp.arange(n) + offset < n, jnp.roll(order, -offset), order
                )
                all_pairs.append(jnp.stack([order, partner], axis=1))
    return jnp.concatenate(all_pairs, axis=0).astype(jnp.int32)


def boundary(coords: jax.Array, *, shape: Shape = "square") -> jax.Array:
    """Squared distance outside the map domain, averaged over neurons.

    ``B(y) = (1/n) sum_i dist(y_i, Omega)^2`` where ``Omega`` is the unit
    square ``[0, 1]^2`` or the disk of radius 1/2 centred at ``(1/2, 1/2)``.

    Args:
        coords: ``(n, 2)`` positions.
        shape: ``"square"`` or ``"disk"``.

    Returns:
        Scalar, 0 when every neuron is inside.
    """
    return _BOUNDARY[shape](coords)


def _boundary_square(coords: jax.Array) -> jax.Array:
    outside = jnp.maximum(-coords, 0.0) + jnp.maximum(coords - 1.0, 0.0)
    return jnp.mean(jnp.sum(outside**2, axis=1))


def _boundary_disk(coords: jax.Array) -> jax.Array:
    radius = jnp.sqrt(jnp.sum((coords - 0.5) ** 2, axis=1) + _TINY)
    return jnp.mean(jnp.maximum(radius - 0.5, 0.0) ** 2)


_BOUNDARY: dict[str, Callable[[jax.Array], jax.Array]] = {
    "square": _boundary_square,
    "disk": _boundary_disk,
}


def _square_quantiles(direction: jax.Array, levels: jax.Array) -> jax.Array:
    """Quantiles of ``<u, direction>`` for ``u`` uniform on ``[0, 1]^2``.

    The projection is ``min(c, 0) + |c| U`` summed over the two axes, a sum of
    two uniforms with a trapezoidal density on ``[0, a + b]``
    (``a >= b`` the absolute components), whose quantile is closed form.
    """
    offset = jnp.sum(jnp.minimum(direction, 0.0))
    a = jnp.max(jnp.abs(direction))
    b = jnp.min(jnp.abs(direction))
    ramp = b / (2 * a)
    low = jnp.sqrt(2 * a * b * levels)
    mid = levels * a + b / 2
    high = a + b - jnp.sqrt(2 * a * b * (1 - levels))
    quantile = jnp.where(levels < ramp, low, jnp.where(levels <= 1 - ramp, mid, high))
    return offset + quantile


def _disk_quantiles(direction: jax.Array, levels: jax.Array) -> jax.Array:
    """Quantiles of ``<u, direction>`` for ``u`` uniform on the centred disk.

    The projection of the disk of radius ``R = 1/2`` has the semicircle density;
    its CDF ``F(t) = 1/2 + (t sqrt(R^2 - t^2) + R^2 asin(t / R)) / (pi R^2)`` is
    inverted by bisection (the same for every unit direction).
    """
    radius = 0.5

    def cdf(t):
        inner = jnp.sqrt(jnp.maximum(radius**2 - t**2, 0.0))
        return 0.5 + (t * inner + radius**2 * jnp.arcsin(t / radius)) / (
            jnp.pi * radius**2
        )

    def body(_, bracket):
        lo, hi = bracket
        mid = (lo + hi) / 2
        below = cdf(mid) < levels
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(
        0, 40, body, (jnp.full_like(levels, -radius), jnp.full_like(levels, radius))
    )
    centre = 0.5 * jnp.sum(direction)
    return centre + (lo + hi) / 2


_QUANTILES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "square": _square_quantiles,
    "disk": _disk_quantiles,
}


def uniformity(
    coords: jax.Array,
    key: jax.Array,
    *,
    n_projections: int = 16,
    shape: Shape = "square",
) -> jax.Array:
    """Sliced Wasserstein-2 distance to the uniform distribution on the map.

    ``U(y) = (1/L) sum_l (1/n) sum_k (sort(<y, theta_l>)_k - F_l^{-1}((k + 1/2)/n))^2``
    over ``L`` directions ``theta_l`` evenly spaced on the half circle with a
    random rotation from ``key``, where ``F_l^{-1}`` is the exact quantile
    function of the projected uniform distribution on the square or disk. Zero
    only when every projection matches, i.e. the map is filled evenly.

    Args:
        coords: ``(n, 2)`` positions.
        key: PRNG key for the rotation of the directions.
        n_projections: number of directions ``L``.
        shape: ``"square"`` or ``"disk"``.

    Returns:
        Scalar.
    """
    rotation = jax.random.uniform(key, (), dtype=coords.dtype)
    return rotated_uniformity(
        coords, rotation, n_projections=n_projections, shape=shape
    )


def rotated_uniformity(
    coords: jax.Array,
    rotation: float | jax.Array,
    *,
    n_projections: int = 16,
    shape: Shape = "square",
) -> jax.Array:
    """`uniformity` with the directions rotated by ``rotation * pi`` (no key).

    Args:
        coords: ``(n, 2)`` positions.
        rotation: rotation of the first direction, in half turns.
        n_projections: number of directions.
        shape: ``"square"`` or ``"disk"``.

    Returns:
        Scalar.
    """
    n = coords.shape[0]
    angles = (
        jnp.arange(n_projections, dtype=coords.dtype) / n_projections + rotation
    ) * jnp.pi
    directions = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)
    levels = (jnp.arange(n, dtype=coords.dtype) + 0.5) / n
    quantile_fn = _QUANTILES[shape]
    targets = jax.vmap(quantile_fn, in_axes=(0, None))(directions, levels)
    projected = jnp.sort(directions @ coords.T, axis=1)
    return jnp.mean((projected - targets) ** 2)


def map_smoothness(
    activations: jax.Array,
    edges: jax.Array,
    weights: jax.Array | None = None,
    *,
    per_neuron: bool = False,
) -> jax.Array:
    """Topographic smoothness of activations on a fixed map (a regulariser).

    ``S(x) = sum_e w_e mean_b (z_{b, i_e} - z_{b, j_e})^2`` for activations
    centred per neuron over the batch and divided by one common scale, the
    root mean variance of all neurons (``per_neuron``: each neuron by its own
    standard deviation, so that ``S = sum_e w_e 2 (1 - corr_e)``). The edges
    join neurons that are neighbours on the map (e.g.
    `topojax.layout.grid.grid_edges`). Differentiable with respect to the
    activations; minimising it makes neighbouring neurons respond alike, so the
    layer's maps are smooth. The common scale keeps the relative strength of
    neurons, which is what a rendered map shows.

    Args:
        activations: ``(batch, n_neurons)``.
        edges: ``(n_edges, 2)`` int pairs of map neighbours.
        weights: optional ``(n_edges,)`` weights; default ``1 / n_edges``.
        per_neuron: standardise each neuron separately.

    Returns:
        Scalar, scale-invariant in the activations.
    """
    centred = activations - activations.mean(axis=0, keepdims=True)
    variance = jnp.mean(centred**2, axis=0, keepdims=True)
    if not per_neuron:
        variance = jnp.mean(variance)
    z = centred / jnp.sqrt(variance + 1e-6)
    per_edge = jnp.mean((z[:, edges[:, 0]] - z[:, edges[:, 1]]) ** 2, axis=0)
    if weights is None:
        return jnp.mean(per_edge)
    return jnp.sum(weights * per_edge)


def weighted_sum(
    terms: Sequence[tuple[float | jax.Array, Callable[[jax.Array], jax.Array]]],
) -> Callable[[jax.Array], jax.Array]:
    """Compose objectives ``f_k(coords)`` into ``coords -> sum_k w_k f_k(coords)``.

    Args:
        terms: pairs ``(weight, objective)``; bind the data of each objective
            first, e.g. ``functools.partial(attraction, affinities=p, scale=s)``.

    Returns:
        A scalar function of the coordinates.

    Example:
        >>> loss = weighted_sum([(1.0, functools.partial(boundary, shape="disk"))])
    """
    terms = tuple(terms)

    def total(coords: jax.Array) -> jax.Array:
        return sum(weight * fn(coords) for weight, fn in terms)

    return total
