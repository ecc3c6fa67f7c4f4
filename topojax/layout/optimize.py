"""The topojax layout optimiser: minimise a composed topographic objective.

`optimize` lays out neurons by minimising, with an optax optimiser inside one
`jax.lax.scan` under `jax.jit`,

``L(y) = e(t) a A(y) + r R(y) + c(t) C(y) + b B(y) + u U(y)``

where ``A`` is the perplexity-calibrated Student-t `attraction`, ``R`` the
normalised `repulsion` (together the t-SNE divergence ``KL(P || Q)``), ``C``
the short-range `soft_core` repulsion at the overlap scale, ``B`` the
`boundary` term of the unit square (or disk) and ``U`` the sliced-Wasserstein
`uniformity` term (see `topojax.layout.objectives`). ``e(t)`` is an early
exaggeration of the attraction (clusters form first) and ``c(t)`` ramps the
soft core in over the second half (overlaps are removed last). Positions live
in map units, so the kernel scale and the soft-core radius are multiples of
the typical spacing ``1 / sqrt(n)`` of ``n`` evenly spread neurons.

For ``n <= exact_max`` every pair enters exactly (blocked, memory
``O(1024 n)``); above it the repulsion is estimated from random pairs and the
soft core uses sort-based candidate pairs, so memory stays ``O(n k)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from topojax.layout import objectives
from topojax.layout.base import (
    Layout,
    check_features,
    knn,
    make_layout,
    prepare,
    rescale_unit,
)

# Above this many neurons the pairwise terms are sampled (see module docstring).
EXACT_MAX = 512


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=[
        "attraction",
        "repulsion",
        "soft_core",
        "boundary",
        "uniformity",
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
        exaggeration: factor on the attraction during the first quarter.
    """

    attraction: float | jax.Array = 1.0
    repulsion: float | jax.Array = 1.0
    soft_core: float | jax.Array = 1.0
    boundary: float | jax.Array = 10.0
    uniformity: float | jax.Array = 10.0
    exaggeration: float | jax.Array = 4.0


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


_SQUARED_DISTANCE = {
    "cosine": lambda d: 2.0 * d,
    "correlation": lambda d: 2.0 * d,
    "euclidean": jnp.square,
}


def layout_affinities(
    features: jax.Array, *, perplexity: float = 30.0, metric: str = "cosine"
) -> objectives.Affinities:
    """Perplexity affinities on the exact k-NN graph, ``k = min(n - 1, 3 perplexity)``.

    Cosine and correlation distances ``1 - sim`` become the squared chord
    distance ``2 (1 - sim)`` of unit rows; Euclidean distances are squared.

    Args:
        features: ``(n_neurons, n_features)`` float32, ``n_neurons >= 2``.
        perplexity: effective number of neighbours.
        metric: one of ``METRICS``.

    Returns:
        `objectives.Affinities` with ``n_neurons * k`` edges.
    """
    n = features.shape[0]
    # Like openTSNE: at most (n - 1) / 3, so that 3 * perplexity neighbours exist.
    perplexity = max(1.0, min(perplexity, (n - 1) / 3))
    k = int(min(n - 1, math.ceil(3 * perplexity)))
    if metric != "euclidean":
        # Dead neurons (zero rows) are at cosine distance 1 from everything; an
        # extra coordinate makes them identical to each other instead, so they
        # gather in one place rather than sit among live neighbourhoods.
        unit, _ = prepare(features, metric)
        dead = jnp.sum(unit**2, axis=1, keepdims=True) < 0.5
        features, metric = jnp.concatenate([unit, dead.astype(unit.dtype)], 1), "cosine"
    indices, distances = knn(features, k, metric)
    return objectives.perplexity_affinities(
        indices, _SQUARED_DISTANCE[metric](distances), perplexity
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "optimizer",
        "n_steps",
        "n_frames",
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
    kernel_scale: float | jax.Array = 1.0,
    core_radius: float | jax.Array = 0.5,
    n_frames: int = 1,
    exact: bool = True,
    shape: objectives.Shape = "square",
    n_negatives: int = 16,
    n_projections: int = 4,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Minimise the composed objective from ``coords`` (the compiled core).

    Args:
        coords: ``(n, 2)`` initial positions in map units, ``n >= 2``.
        affinities: `objectives.Affinities` of the neurons.
        key: PRNG key (random pairs, projection directions).
        weights: `Weights`.
        optimizer: optax transformation (static: reuse the same object).
        n_steps: number of steps; a multiple of ``n_frames``.
        kernel_scale: Student-t scale in units of ``1 / sqrt(n)``.
        core_radius: soft-core radius in units of ``1 / sqrt(n)``.
        n_frames: number of saved positions (the last is the result).
        exact: all pairs (True) or sampled pairs (False).
        shape: ``"square"`` or ``"disk"``.
        n_negatives: random pairs per neuron for the sampled repulsion.
        n_projections: directions of the uniformity term.

    Returns:
        ``(coords (n, 2), trajectory (n_frames, n, 2), losses (n_steps,))``.
    """
    n = coords.shape[0]
    spacing = 1.0 / jnp.sqrt(jnp.float32(n))
    scale = kernel_scale * spacing
    radius = core_radius * spacing

    def objective(y, step_key, progress):
        exaggeration = jnp.where(progress < 0.25, weights.exaggeration, 1.0)
        core_weight = weights.soft_core * jnp.clip(2.0 * progress - 1.0, 0.0, 1.0)
        pair_key, projection_key = jax.random.split(step_key)
        if exact:
            repel = functools.partial(objectives.repulsion, scale=scale)
            core = functools.partial(objectives.soft_core, radius=radius)
        else:
            pairs = objectives.random_pairs(pair_key, n, n_negatives)
            repel = functools.partial(
                objectives.sampled_repulsion, pairs=pairs, scale=scale
            )
            candidates = objectives.grid_candidate_pairs(y, radius=radius)
            core = functools.partial(
                objectives.soft_core_pairs, pairs=candidates, radius=radius
            )
        total = objectives.weighted_sum(
            [
                (
                    exaggeration * weights.attraction,
                    functools.partial(
                        objectives.attraction, affinities=affinities, scale=scale
                    ),
                ),
                (weights.repulsion, repel),
                (core_weight, core),
                (weights.boundary, functools.partial(objectives.boundary, shape=shape)),
                (
                    weights.uniformity,
                    functools.partial(
                        objectives.uniformity,
                        key=projection_key,
                        n_projections=n_projections,
                        shape=shape,
                    ),
                ),
            ]
        )
        return total(y)

    value_and_grad = jax.value_and_grad(objective)

    def step(carry, step_index):
        y, opt_state = carry
        progress = step_index / n_steps
        loss, grad = value_and_grad(y, jax.random.fold_in(key, step_index), progress)
        updates, opt_state = optimizer.update(grad, opt_state, y)
        return (optax.apply_updates(y, updates), opt_state), loss

    def frame(carry, frame_steps):
        carry, losses = jax.lax.scan(step, carry, frame_steps)
        return carry, (carry[0], losses)

    steps = jnp.arange(n_steps).reshape(n_frames, n_steps // n_frames)
    (final, _), (trajectory, losses) = jax.lax.scan(
        frame, (coords, optimizer.init(coords)), steps
    )
    return final, trajectory, losses.reshape(-1)


def _initial_coords(features, init, key, metric: str) -> jax.Array:
    """Initial positions in ``[0.1, 0.9]^2`` from an array or a method name."""
    if init is None:
        init = "pca"
    if isinstance(init, str):
        from topojax.layout import get_method  # the registry imports this module

        init = get_method(init)(features, key=key, metric=metric).coords
    init = np.asarray(init, dtype=np.float32)
    if init.shape != (features.shape[0], 2) or not np.all(np.isfinite(init)):
        raise ValueError(
            f"init must be finite coordinates of shape ({features.shape[0]}, 2); "
            f"got shape {init.shape}"
        )
    return 0.1 + 0.8 * rescale_unit(jnp.asarray(init))


def optimize(
    features,
    *,
    key: jax.Array,
    metric: str = "cosine",
    init=None,
    optimizer: optax.GradientTransformation | None = None,
    n_steps: int = 500,
    weights: Weights | None = None,
    perplexity: float = 30.0,
    kernel_scale: float = 1.0,
    core_radius: float = 0.5,
    shape: objectives.Shape = "square",
    exact: bool | None = None,
    return_trajectory: bool = False,
    n_frames: int = 50,
) -> Layout:
    """Lay out neurons by minimising the topographic objective with optax.

    Args:
        features: ``(n_neurons, n_features)`` profiles, one row per neuron.
        key: PRNG key; the result is deterministic for a key.
        metric: ``"cosine"``, ``"euclidean"`` or ``"correlation"``.
        init: initial positions ``(n_neurons, 2)``, or a method name in
            ``topojax.layout.METHODS`` (default ``"pca"``).
        optimizer: any optax `GradientTransformation`; default
            `default_optimizer` (Adam, cosine-decayed step size). Pass the same
            object again to avoid recompiling.
        n_steps: optimisation steps.
        weights: `Weights` of the objective terms; default ``Weights()``.
        perplexity: effective number of neighbours of the affinities.
        kernel_scale: Student-t scale in units of ``1 / sqrt(n_neurons)``.
        core_radius: soft-core radius in units of ``1 / sqrt(n_neurons)``.
        shape: map domain, ``"square"`` or ``"disk"``.
        exact: all pairs (True) or sampled pairs (False); default
            ``n_neurons <= EXACT_MAX``.
        return_trajectory: also return ``n_frames`` intermediate positions.
        n_frames: frames of the trajectory (must divide ``n_steps``).

    Returns:
        `Layout` with ``coords`` ``(n_neurons, 2)`` in ``[0, 1]^2``, ``losses``
        ``(n_steps,)`` and, if asked, ``trajectory`` ``(n_frames, n_neurons, 2)``.

    Raises:
        ValueError: bad features, metric, shape, init, or step counts.
    """
    features = check_features(features, metric=metric)
    if shape not in objectives._BOUNDARY:
        raise ValueError(
            f"unknown shape {shape!r}; expected one of {sorted(objectives._BOUNDARY)}"
        )
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1; got {n_steps}")
    if perplexity <= 0:
        raise ValueError(f"perplexity must be > 0; got {perplexity}")
    n_frames = n_frames if return_trajectory else 1
    if n_frames < 1 or n_steps % n_frames:
        raise ValueError(
            f"n_frames must be >= 1 and divide n_steps={n_steps}; got {n_frames}"
        )
    init_key, run_key = jax.random.split(key)
    coords = _initial_coords(features, init, init_key, metric)
    n = features.shape[0]
    if n < 2:
        return make_layout(coords, "optimize", losses=jnp.zeros((n_steps,)))
    # Coincident starting points (e.g. dead neurons) would feel identical forces.
    coords = coords + 1e-3 * jax.random.normal(init_key, coords.shape) / math.sqrt(n)
    affinities = layout_affinities(features, perplexity=perplexity, metric=metric)
    final, trajectory, losses = optimize_coords(
        coords,
        affinities,
        run_key,
        Weights() if weights is None else weights,
        optimizer=default_optimizer(n_steps) if optimizer is None else optimizer,
        n_steps=n_steps,
        kernel_scale=kernel_scale,
        core_radius=core_radius,
        n_frames=n_frames,
        exact=n <= EXACT_MAX if exact is None else exact,
        shape=shape,
    )
    return make_layout(
        final,
        "optimize",
        trajectory=trajectory if return_trajectory else None,
        losses=losses,
    )
