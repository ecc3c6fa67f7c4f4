"""The topojax layout optimiser: minimise a composed topographic objective.

`optimize` lays out neurons by minimising, with an optax optimiser inside one
`jax.lax.scan` under `jax.jit`,

``L(y) = e(t) a A(y) + r R(y) + c(t) (C(y) + p F(y)) + b B(y) + u U(y)``

where ``A`` is the perplexity-calibrated Student-t `attraction`, ``R`` the
normalised `repulsion` (together the t-SNE divergence ``KL(P || Q)``, which
keeps feature neighbours together: recall), ``F`` the `false_neighbours`
penalty on map neighbours that are far apart in feature space
(trustworthiness), ``C`` the short-range `soft_core` repulsion at the overlap
scale, ``B`` the `boundary` term of the unit square (or disk) and ``U`` the
sliced-Wasserstein `uniformity` term (see `topojax.layout.objectives`).
``e(t)`` is an early exaggeration of the attraction during the first quarter
(clusters form first) and ``c(t)`` ramps the soft core and the false-neighbour
term in over the second half (overlaps are removed last). After the
exaggeration the Student-t kernel's degrees of freedom and scale are fitted by
the same objective, as in parametric t-SNE: clustered profiles get heavy
tails, continuous sheets light ones. Positions live in map units, so the
kernel scale and the radii are multiples of the typical spacing ``1 / sqrt(n)``
of ``n`` evenly spread neurons.

The run starts from the `spectral` layout of the same affinities (Laplacian
eigenmaps: a sheet of profiles curved in feature space is laid out flat, where
a PCA start folds it) and ends, after rescaling, with the rim stretch of
`topojax.layout.fill` (``fill=True``), so that the convex hull fills the map.

For ``n <= EXACT_MAX`` every pair enters exactly. Above it the repulsion sums
each neuron's affinity neighbours exactly and estimates the other pairs from
32 random partners per neuron and per step (128 above 4096 neurons, where
fewer left too much noise: `default_negatives`; `objectives.sampled_kl`); the soft
core and the false-neighbour term use sort-based candidate pairs refreshed
every few steps, with feature ranks estimated by a `RankSketch`. Time per step
is ``O(n (k + m))`` for ``m`` partners and memory ``O(n k)``: never an
``(n, n)`` matrix.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import optax

from topojax.layout import objectives
from topojax.layout.base import (
    Layout,
    check_features,
    flag_dead,
    initial_layout,
    knn,
    make_layout,
    pairwise_distances,
    rescale_unit,
)
from topojax.layout.fill import fill_shape
from topojax.layout.spectral import spectral_start

# Above this many neurons the pairwise terms are sampled (see module docstring).
EXACT_MAX = 512
# Up to this many neurons `optimize` runs 750 steps by default, else 400.
LONG_RUN_MAX = 2048
# Steps between refreshes of the soft-core candidate pairs (sampled mode).
_CANDIDATE_REFRESH = 10
# Schedule, as fractions of the run: exaggeration (then kernel fitting) until
# _EXAGGERATION_END; the soft core and false-neighbour terms ramp in linearly
# from _LATE_START to the end; their candidate pairs are found from a little
# before _LATE_START on.
_EXAGGERATION_END = 0.25
_LATE_START = 0.5
_CANDIDATES_START = 0.45
# Sort-order neighbours per neuron for the false-neighbour pairs (sampled mode).
_PRECISION_WINDOW = 6


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=[
        "attraction",
        "repulsion",
        "soft_core",
        "boundary",
        "uniformity",
        "precision",
        "exaggeration",
    ],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class Weights:
    """Weights of the terms of the `optimize` objective (a pytree of floats).

    Attributes:
        attraction: weight ``a`` of `objectives.attraction`.
        repulsion: weight ``r`` of `objectives.repulsion`.
        soft_core: final weight of `objectives.soft_core` (ramped in from 0).
        boundary: weight ``b`` of `objectives.boundary`.
        uniformity: weight ``u`` of `objectives.uniformity`.
        precision: final weight of `objectives.false_neighbours` (ramped in
            like the soft core; exact mode only).
        exaggeration: factor on the attraction during the first quarter.
    """

    attraction: float | jax.Array = 1.0
    repulsion: float | jax.Array = 1.0
    soft_core: float | jax.Array = 1.0
    boundary: float | jax.Array = 10.0
    uniformity: float | jax.Array = 10.0
    precision: float | jax.Array = 3.0
    exaggeration: float | jax.Array = 4.0


def default_learning_rate(n_neurons: int) -> float:
    """Initial Adam step in map units: ``min(0.02, 0.64 / sqrt(n))``.

    Adam moves every neuron by about the step size, whatever its gradient; above
    1024 neurons the step shrinks with the spacing ``1 / sqrt(n)`` so that the
    noise of the sampled repulsion does not shuffle neighbours (at 16384
    neurons a fixed 0.02 kept 0.49 of the 10 nearest neighbours, 0.005 kept
    0.69).
    """
    return min(0.02, 0.64 / math.sqrt(max(n_neurons, 1)))


def default_negatives(n_neurons: int) -> int:
    """Random partners per neuron and step of the sampled repulsion (32 or 128).

    128 above 4096 neurons. Measured on the synthetic layer: at 4096 neurons 64
    or 96 partners change kNN recall@10 by < 0.01 (0.839 -> 0.844); at 16384,
    48 partners kept 0.69 of the 10 nearest neighbours, 64 0.73, 128 0.785 and
    192 0.79, for 22, 20, 31 and 42 s on a 2-core CPU.
    """
    return 32 if n_neurons <= 4096 else 128


@functools.lru_cache(maxsize=32)
def default_optimizer(
    n_steps: int, learning_rate: float = 0.02
) -> optax.GradientTransformation:
    """Adam with a cosine-decayed learning rate (cached: same object, no recompile).

    Args:
        n_steps: total number of steps of the decay.
        learning_rate: initial step size in map units.

    Returns:
        An optax `GradientTransformation`.
    """
    schedule = optax.cosine_decay_schedule(learning_rate, n_steps, alpha=0.02)
    return optax.adam(schedule)


def feature_rank_excess(
    features: jax.Array, *, k: int = 10, metric: str = "cosine"
) -> jax.Array:
    """Dense `objectives.rank_excess` of the neurons' feature-space ranks.

    Args:
        features: ``(n_neurons, n_features)``; small ``n`` (an ``(n, n)`` result).
        k: neighbourhood size that costs nothing.
        metric: feature distance.

    Returns:
        ``(n_neurons, n_neurons)`` float32.
    """
    features, metric = flag_dead(features, metric)
    distances = pairwise_distances(features, features, metric)
    n = features.shape[0]
    distances = jnp.where(jnp.eye(n, dtype=bool), -1.0, distances)
    ranks = jnp.argsort(jnp.argsort(distances, axis=1, stable=True), axis=1)
    return objectives.rank_excess(ranks, k)


_ROW_DISTANCE = {
    "cosine": lambda a, b: jnp.clip(1.0 - jnp.sum(a * b, axis=-1), 0.0, 2.0),
    "euclidean": lambda a, b: jnp.sqrt(jnp.sum((a - b) ** 2, axis=-1)),
}


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["features", "samples", "knn_distances"],
    meta_fields=["metric", "k"],
)
@dataclasses.dataclass(frozen=True)
class RankSketch:
    """What estimates feature-space ranks of any pair in ``O(n (k + m))`` memory.

    The rank of ``j`` among the neighbours of ``i`` is exact within the ``k``
    nearest (``1 + #{l : d_il < d_ij}`` from the sorted k-NN distances) and
    beyond them ``1 + (n - 1) F_i(d_ij)`` with ``F_i`` the empirical CDF of the
    distances from ``i`` to ``m`` random neurons.

    Attributes:
        features: ``(n, d)`` prepared features (unit rows with the dead flag for
            cosine/correlation).
        samples: ``(n, m)`` sorted distances to random neurons.
        knn_distances: ``(n, k)`` sorted distances to the nearest neighbours.
        metric: ``"cosine"`` or ``"euclidean"`` on the prepared features.
        k: neighbourhood size that costs nothing.
    """

    features: jax.Array
    samples: jax.Array
    knn_distances: jax.Array
    metric: str
    k: int

    def excess(self, pairs: jax.Array) -> jax.Array:
        """``(m,)`` estimated `objectives.rank_excess` of ``pairs`` ``(m, 2)``."""
        n = self.features.shape[0]
        distance = _ROW_DISTANCE[self.metric](
            self.features[pairs[:, 0]], self.features[pairs[:, 1]]
        )

        def rank(i):
            near = self.knn_distances[i]
            exact = 1.0 + jnp.sum(near < distance[:, None], axis=1)
            below = jnp.sum(self.samples[i] < distance[:, None], axis=1)
            sampled = 1.0 + (n - 1) * below / self.samples.shape[1]
            beyond = distance > near[:, -1]
            return jnp.where(beyond, jnp.maximum(sampled, near.shape[1] + 1), exact)

        mean_rank = 0.5 * (rank(pairs[:, 0]) + rank(pairs[:, 1]))
        return jnp.maximum(mean_rank - self.k, 0.0) / n


def rank_sketch(
    features: jax.Array,
    key: jax.Array,
    *,
    k: int = 10,
    metric: str = "cosine",
    n_samples: int = 32,
) -> RankSketch:
    """Build a `RankSketch` (for the false-neighbour term at large ``n``).

    Args:
        features: ``(n_neurons, n_features)``.
        key: PRNG key for the random neurons.
        k: neighbourhood size that costs nothing (also the exact k-NN kept).
        metric: feature distance.
        n_samples: random neurons per neuron for the distance CDF.

    Returns:
        `RankSketch`.
    """
    features, metric = flag_dead(features, metric)
    if metric != "euclidean":
        metric = "cosine"
    n = features.shape[0]
    k_near = min(k + 1, n - 1)
    _, near = knn(features, k_near, metric)
    offsets = objectives.random_offsets(key, n, n_samples)
    samples = jax.lax.map(
        lambda offset: _ROW_DISTANCE[metric](
            features, jnp.roll(features, -offset, axis=0)
        ),
        offsets,
    )
    return RankSketch(
        features=features,
        samples=jnp.sort(samples.T, axis=1),
        knn_distances=near,
        metric=metric,
        k=k,
    )


def layout_affinities(
    features: jax.Array, *, perplexity: float = 15.0, metric: str = "cosine"
) -> objectives.Affinities:
    """Perplexity affinities on the exact k-NN graph, ``k = min(n - 1, 2 perplexity)``.

    The Gaussian of the conditional affinities acts on squared metric distances
    (``(1 - cos)^2`` for cosine), as in openTSNE and scikit-learn.

    Args:
        features: ``(n_neurons, n_features)`` float32, ``n_neurons >= 2``.
        perplexity: effective number of neighbours.
        metric: one of ``METRICS``.

    Returns:
        `objectives.Affinities` with ``n_neurons * k`` edges.
    """
    n = features.shape[0]
    # Like openTSNE, at most (n - 1) / 3. Two perplexities of neighbours hold
    # nearly all of the affinity mass (three, as in t-SNE, gave the same maps).
    perplexity = max(1.0, min(perplexity, (n - 1) / 3))
    k = int(min(n - 1, math.ceil(2 * perplexity)))
    features, metric = flag_dead(features, metric)
    indices, distances = knn(features, k, metric)
    return objectives.perplexity_affinities(indices, distances**2, perplexity)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["coords", "trajectory", "losses", "dof", "kernel_scale"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class OptimizeResult:
    """What `optimize_coords` returns: the positions and diagnostics.

    Attributes:
        coords: ``(n, 2)`` final positions in map units (about ``[0, 1]^2``).
        trajectory: ``(n_frames, n, 2)`` positions after each frame of steps.
        losses: ``(n_steps,)`` objective value at every step.
        dof: fitted (or fixed) kernel degrees of freedom ``a``.
        kernel_scale: fitted (or fixed) kernel scale, in units of ``1 / sqrt(n)``.
    """

    coords: jax.Array
    trajectory: jax.Array
    losses: jax.Array
    dof: jax.Array
    kernel_scale: jax.Array


@functools.partial(
    jax.jit,
    static_argnames=(
        "optimizer",
        "n_steps",
        "n_frames",
        "learn_kernel",
        "exact",
        "shape",
        "n_negatives",
        "n_projections",
    ),
)
def optimize_coords(
    coords: jax.Array,
    affinities: objectives.Affinities,
    key: jax.Array,
    weights: Weights,
    *,
    optimizer: optax.GradientTransformation,
    n_steps: int,
    excess: jax.Array | RankSketch | None = None,
    precision_radius: float | jax.Array = 0.0,
    kernel_scale: float | jax.Array = 1.0,
    dof: float | jax.Array = 1.0,
    learn_kernel: bool = True,
    core_radius: float | jax.Array = 0.5,
    n_frames: int = 1,
    exact: bool = True,
    shape: objectives.Shape = "square",
    n_negatives: int = 48,
    n_projections: int = 2,
) -> OptimizeResult:
    """Minimise the composed objective from ``coords`` (the compiled core).

    The optimiser updates the pytree ``{"coords", "log_dof", "log_scale"}``:
    with ``learn_kernel`` the kernel's degrees of freedom and scale are fitted
    by the same objective after the exaggeration phase (as in parametric
    t-SNE), so clustered data get heavier tails and continuous sheets lighter
    ones; otherwise their gradients are zero.

    Args:
        coords: ``(n, 2)`` initial positions in map units, ``n >= 2``.
        affinities: `objectives.Affinities` of the neurons.
        key: PRNG key (random pairs, projection directions).
        weights: `Weights`.
        optimizer: optax transformation of the parameter pytree (static: reuse
            the same object to avoid recompiling).
        n_steps: number of steps; a multiple of ``n_frames``.
        excess: enables the false-neighbour term: dense ``(n, n)``
            `objectives.rank_excess` weights with ``exact``, a `RankSketch`
            (pairs found like the soft-core candidates) without.
        precision_radius: its map radius ``R`` in map units.
        kernel_scale: initial Student-t scale in units of ``1 / sqrt(n)``.
        dof: initial kernel degrees of freedom.
        learn_kernel: fit ``dof`` and ``kernel_scale`` too.
        core_radius: soft-core radius in units of ``1 / sqrt(n)``.
        n_frames: number of saved positions (the last is the result).
        exact: all pairs (True) or sampled pairs (False).
        shape: ``"square"`` or ``"disk"``.
        n_negatives: random pairs per neuron for the sampled repulsion.
        n_projections: directions of the uniformity term per step.

    Returns:
        `OptimizeResult`.
    """
    n = coords.shape[0]
    spacing = 1.0 / jnp.sqrt(jnp.float32(n))
    radius = core_radius * spacing

    def objective(params, candidates, rotation, offsets, progress):
        core_pairs, precision_pairs, precision_excess = candidates
        y = params["coords"]
        scale = kernel_scale * spacing * jnp.exp(params["log_scale"])
        kernel_dof = jnp.exp(params["log_dof"])
        exaggeration = jnp.where(
            progress < _EXAGGERATION_END, weights.exaggeration, 1.0
        )
        # The soft core and the false-neighbour term ramp in over the second
        # half; before that they are not even evaluated.
        late = jnp.clip((progress - _LATE_START) / (1.0 - _LATE_START), 0.0, 1.0)
        if exact:
            repel = functools.partial(objectives.repulsion, scale=scale, dof=kernel_dof)
            core = functools.partial(objectives.soft_core, radius=radius)
            precision = functools.partial(
                objectives.false_neighbours, excess=excess, radius=precision_radius
            )
        else:
            core = functools.partial(
                objectives.soft_core_pairs, pairs=core_pairs, radius=radius
            )
            precision = functools.partial(
                objectives.false_neighbours_pairs,
                pairs=precision_pairs,
                excess=precision_excess,
                radius=precision_radius,
            )
        late_terms = objectives.weighted_sum(
            [(weights.soft_core * late, core)]
            + ([] if excess is None else [(weights.precision * late, precision)])
        )
        if exact:
            neighbour_embedding = [
                (
                    exaggeration * weights.attraction,
                    functools.partial(
                        objectives.attraction,
                        affinities=affinities,
                        scale=scale,
                        dof=kernel_dof,
                    ),
                ),
                (weights.repulsion, repel),
            ]
        else:
            # Attraction and repulsion share the neighbours' distances.
            neighbour_embedding = [
                (
                    1.0,
                    functools.partial(
                        objectives.sampled_kl,
                        affinities=affinities,
                        offsets=offsets,
                        scale=scale,
                        dof=kernel_dof,
                        attraction_weight=exaggeration * weights.attraction,
                        repulsion_weight=weights.repulsion,
                    ),
                )
            ]
        total = objectives.weighted_sum(
            [
                *neighbour_embedding,
                (weights.boundary, functools.partial(objectives.boundary, shape=shape)),
                (
                    weights.uniformity,
                    functools.partial(
                        objectives.rotated_uniformity,
                        rotation=rotation,
                        n_projections=n_projections,
                        shape=shape,
                    ),
                ),
                (
                    1.0,
                    lambda z: jax.lax.cond(
                        late > 0, late_terms, lambda _: jnp.zeros((), z.dtype), z
                    ),
                ),
            ]
        )
        return total(y)

    value_and_grad = jax.value_and_grad(objective)

    def find_candidates(y):
        none = (jnp.zeros((0, 2), jnp.int32), jnp.zeros((0,), jnp.float32))
        if exact:
            return (none[0], *none)
        core_pairs = objectives.grid_candidate_pairs(y, radius=radius)
        if excess is None:
            return (core_pairs, *none)
        # The wide cells hold many neurons, so the pairs are a sample of the
        # close ones, weighted to the closest (which cost the most).
        pairs = objectives.grid_candidate_pairs(
            y, radius=precision_radius, window=_PRECISION_WINDOW, shifts=(0.0,)
        )
        return core_pairs, pairs, excess.excess(pairs)

    def step(carry, inputs):
        step_index, rotation, offsets = inputs
        params, opt_state, candidates = carry
        progress = step_index / n_steps
        # Close pairs matter only once the late terms ramp in, and change
        # slowly; refreshing them every few steps is enough.
        candidates = jax.lax.cond(
            (step_index % _CANDIDATE_REFRESH == 0) & (progress >= _CANDIDATES_START),
            find_candidates,
            lambda _: candidates,
            params["coords"],
        )
        loss, grad = value_and_grad(params, candidates, rotation, offsets, progress)
        # The kernel shape is fitted only once the exaggeration phase is over.
        fit_kernel = jnp.float32(learn_kernel) * (progress >= _EXAGGERATION_END)
        grad = {
            "coords": grad["coords"],
            "log_dof": grad["log_dof"] * fit_kernel,
            "log_scale": grad["log_scale"] * fit_kernel,
        }
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, candidates), loss

    def frame(carry, frame_inputs):
        carry, losses = jax.lax.scan(step, carry, frame_inputs)
        return carry, (carry[0]["coords"], losses)

    params = {
        "coords": coords,
        "log_dof": jnp.log(jnp.asarray(dof, jnp.float32)),
        "log_scale": jnp.zeros((), jnp.float32),
    }
    # All random numbers are drawn up front: one rotation of the projections
    # and one set of negative-sample offsets per step.
    rotation_key, offset_key = jax.random.split(key)
    per_frame = (n_frames, n_steps // n_frames)
    inputs = (
        jnp.arange(n_steps).reshape(per_frame),
        jax.random.uniform(rotation_key, per_frame),
        objectives.random_offsets(
            offset_key, n, (*per_frame, 0 if exact else n_negatives)
        ),
    )
    (final, _, _), (trajectory, losses) = jax.lax.scan(
        frame, (params, optimizer.init(params), find_candidates(coords)), inputs
    )
    return OptimizeResult(
        coords=final["coords"],
        trajectory=trajectory,
        losses=losses.reshape(-1),
        dof=jnp.exp(final["log_dof"]),
        kernel_scale=kernel_scale * jnp.exp(final["log_scale"]),
    )


def _rescale_disk(coords: jax.Array) -> jax.Array:
    """Centre on the centroid and scale the farthest neuron to radius 1/2."""
    centred = coords - coords.mean(axis=0, keepdims=True)
    radius = jnp.sqrt(jnp.max(jnp.sum(centred**2, axis=1)))
    return (0.5 + 0.5 * centred / jnp.maximum(radius, 1e-12)).astype(jnp.float32)


# Back to [0, 1]^2 per axis like every layout; a disk stays a centred disk.
_RESCALE = {"square": rescale_unit, "disk": _rescale_disk}


def _initial_coords(features, init, key, metric: str) -> jax.Array:
    """Initial positions in ``[0.1, 0.9]^2`` from an array or a method name."""
    init = initial_layout(features, init, key=key, metric=metric)
    return 0.1 + 0.8 * rescale_unit(jnp.asarray(init))


def optimize(
    features,
    *,
    key: jax.Array,
    metric: str = "cosine",
    init=None,
    optimizer: optax.GradientTransformation | None = None,
    n_steps: int | None = None,
    weights: Weights | None = None,
    perplexity: float = 15.0,
    kernel_scale: float = 1.0,
    dof: float = 1.0,
    learn_kernel: bool = True,
    core_radius: float = 0.5,
    n_negatives: int | None = None,
    precision_k: int = 10,
    precision_radius: float = 2.0,
    shape: objectives.Shape = "square",
    exact: bool | None = None,
    return_trajectory: bool = False,
    n_frames: int = 50,
    fill: bool = True,
) -> Layout:
    """Lay out neurons by minimising the topographic objective with optax.

    Args:
        features: ``(n_neurons, n_features)`` profiles, one row per neuron.
        key: PRNG key; the result is deterministic for a key.
        metric: ``"cosine"``, ``"euclidean"`` or ``"correlation"``.
        init: initial positions ``(n_neurons, 2)``, or a method name in
            ``topojax.layout.METHODS`` (default ``"spectral"``: Laplacian
            eigenmaps of the affinity graph, which lays a curved sheet of
            profiles out flat where PCA folds it).
        optimizer: any optax `GradientTransformation`; default
            `default_optimizer` (Adam, cosine-decayed step size starting at
            `default_learning_rate`). Pass the same
            object again to avoid recompiling.
        n_steps: optimisation steps; default 750 up to ``LONG_RUN_MAX``
            neurons (cheap there, and the maps keep more neighbours), else
            400 (from the spectral start, 500 steps kept 0.003 more of the
            10 nearest neighbours at 4096 neurons, for 20 % more time; on an
            accelerator more steps and partners are cheap: `bench/README.md`).
        weights: `Weights` of the objective terms; default ``Weights()``.
        perplexity: effective number of neighbours of the affinities.
        kernel_scale: initial Student-t scale in units of ``1 / sqrt(n_neurons)``.
        dof: initial degrees of freedom of the Student-t kernel.
        learn_kernel: fit ``dof`` and ``kernel_scale`` with the coordinates.
        core_radius: soft-core radius in units of ``1 / sqrt(n_neurons)``.
        n_negatives: random partners per neuron and step of the sampled
            repulsion (above ``EXACT_MAX``); default `default_negatives`.
        precision_k: neighbourhood size of the false-neighbour term: pairs
            within each other's ``precision_k`` nearest feature neighbours cost
            nothing; 0 switches the term off.
        precision_radius: its map radius, in units of the radius
            ``sqrt(precision_k / (pi n_neurons))`` that holds ``precision_k``
            evenly spread neurons.
        shape: map domain, ``"square"`` or ``"disk"``.
        exact: all pairs (True) or sampled pairs (False); default
            ``n_neurons <= EXACT_MAX``.
        return_trajectory: also return ``n_frames`` intermediate positions.
        n_frames: frames of the trajectory (must divide ``n_steps``).
        fill: finally stretch the outline onto the square (or disk) with
            `topojax.layout.fill.fill_shape` (its rim only), so that maps have
            no blank corners; the trajectory is not stretched. False returns
            the minimiser's positions, only rescaled.

    Returns:
        `Layout` with ``coords`` ``(n_neurons, 2)`` in ``[0, 1]^2``, ``losses``
        ``(n_steps,)`` and, if asked, ``trajectory`` ``(n_frames, n_neurons, 2)``.

    Raises:
        ValueError: bad features, metric, shape, init, or step counts.
    """
    features = check_features(features, metric=metric)
    n = features.shape[0]
    if n_steps is None:
        n_steps = 750 if n <= LONG_RUN_MAX else 400
    if shape not in objectives._BOUNDARY:
        raise ValueError(
            f"unknown shape {shape!r}; expected one of {sorted(objectives._BOUNDARY)}"
        )
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1; got {n_steps}")
    if perplexity <= 0:
        raise ValueError(f"perplexity must be > 0; got {perplexity}")
    if n_negatives is not None and (
        not isinstance(n_negatives, int) or n_negatives < 1
    ):
        raise ValueError(f"n_negatives must be an int >= 1; got {n_negatives!r}")
    if dof <= 0 or kernel_scale <= 0 or core_radius < 0:
        raise ValueError(
            "dof and kernel_scale must be > 0 and core_radius >= 0; got "
            f"dof={dof}, kernel_scale={kernel_scale}, core_radius={core_radius}"
        )
    n_frames = n_frames if return_trajectory else 1
    if n_frames < 1 or n_steps % n_frames:
        raise ValueError(
            f"n_frames must be >= 1 and divide n_steps={n_steps}; got {n_frames}"
        )
    init_key, run_key = jax.random.split(key)
    if n < 2:
        coords = _initial_coords(features, init, init_key, metric)
        return make_layout(coords, "optimize", losses=jnp.zeros((n_steps,)))
    affinities = layout_affinities(features, perplexity=perplexity, metric=metric)
    if init is None:  # the `spectral` layout, from the same affinities
        init = spectral_start(features, affinities, metric)
    coords = _initial_coords(features, init, init_key, metric)
    # Coincident starting points (e.g. dead neurons) would feel identical forces.
    coords = coords + 1e-3 * jax.random.normal(init_key, coords.shape) / math.sqrt(n)
    exact = n <= EXACT_MAX if exact is None else exact
    precision_k = min(precision_k, n - 1)
    sketch_key, run_key = jax.random.split(run_key)
    excess = None
    if precision_k >= 1:
        excess = (
            feature_rank_excess(features, k=precision_k, metric=metric)
            if exact
            else rank_sketch(features, sketch_key, k=precision_k, metric=metric)
        )
    result = optimize_coords(
        coords,
        affinities,
        run_key,
        Weights() if weights is None else weights,
        optimizer=(
            default_optimizer(n_steps, default_learning_rate(n))
            if optimizer is None
            else optimizer
        ),
        n_steps=n_steps,
        excess=excess,
        precision_radius=precision_radius
        * math.sqrt(max(precision_k, 1) / (math.pi * n)),
        kernel_scale=kernel_scale,
        dof=dof,
        learn_kernel=learn_kernel,
        core_radius=core_radius,
        n_negatives=default_negatives(n) if n_negatives is None else n_negatives,
        n_frames=n_frames,
        exact=exact,
        shape=shape,
    )
    coords = _RESCALE[shape](result.coords)
    if fill:
        coords = fill_shape(coords, shape=shape).coords
    return Layout(
        coords=coords,
        method="optimize",
        trajectory=result.trajectory if return_trajectory else None,
        losses=result.losses,
    )
