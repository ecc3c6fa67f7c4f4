"""The topojax layout optimiser: minimise a composed topographic objective.

`optimize` lays out neurons by minimising, with an optax optimiser inside one
`jax.lax.scan` under `jax.jit`,

``L(y) = e(t) a A(y) + r R(y) + c(t) C(y) + b B(y) + u U(y)``

where ``A`` is the perplexity-calibrated Student-t `attraction`, ``R`` the
normalised `repulsion` (together the t-SNE divergence ``KL(P || Q)``), ``C``
the short-range `soft_core` repulsion at the overlap scale, ``B`` the
`boundary` term of the unit square (or disk) and ``U`` the sliced-Wasserstein
`uniformity` term (see `topojax.layout.objectives`). ``e(t)`` is an early
exaggeration of the attraction during the first quarter (clusters form
first) and ``c(t)`` ramps the soft core in over the second half (overlaps are
removed last). After the exaggeration the Student-t kernel's degrees of
freedom and scale are fitted by the same objective, as in parametric t-SNE:
clustered profiles get heavy tails, continuous sheets light ones. Positions
live in map units, so the kernel scale and the soft-core radius are multiples
of the typical spacing ``1 / sqrt(n)`` of ``n`` evenly spread neurons.

For ``n <= EXACT_MAX`` every pair enters exactly; above it the repulsion is
estimated from 64 random partners per neuron and per step, and the soft core
uses sort-based candidate pairs refreshed every few steps, so time per step is
``O(n (k + 64))`` and memory ``O(n k)``: never an ``(n, n)`` matrix.
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
# Steps between refreshes of the soft-core candidate pairs (sampled mode).
_CANDIDATE_REFRESH = 10


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
    if metric != "euclidean":
        # Dead neurons (zero rows) are at cosine distance 1 from everything; an
        # extra coordinate makes them identical to each other instead, so they
        # gather in one place rather than sit among live neighbourhoods.
        unit, _ = prepare(features, metric)
        dead = jnp.sum(unit**2, axis=1, keepdims=True) < 0.5
        features, metric = jnp.concatenate([unit, dead.astype(unit.dtype)], 1), "cosine"
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
    kernel_scale: float | jax.Array = 1.0,
    dof: float | jax.Array = 1.0,
    learn_kernel: bool = True,
    core_radius: float | jax.Array = 0.5,
    n_frames: int = 1,
    exact: bool = True,
    shape: objectives.Shape = "square",
    n_negatives: int = 64,
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
        y = params["coords"]
        scale = kernel_scale * spacing * jnp.exp(params["log_scale"])
        kernel_dof = jnp.exp(params["log_dof"])
        exaggeration = jnp.where(progress < 0.25, weights.exaggeration, 1.0)
        core_weight = weights.soft_core * jnp.clip(2.0 * progress - 1.0, 0.0, 1.0)
        if exact:
            repel = functools.partial(objectives.repulsion, scale=scale, dof=kernel_dof)
            core = functools.partial(objectives.soft_core, radius=radius)
        else:
            repel = functools.partial(
                objectives.sampled_repulsion,
                offsets=offsets,
                scale=scale,
                dof=kernel_dof,
            )
            core = functools.partial(
                objectives.soft_core_pairs, pairs=candidates, radius=radius
            )
        total = objectives.weighted_sum(
            [
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
                (core_weight, core),
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
            ]
        )
        return total(y)

    value_and_grad = jax.value_and_grad(objective)

    def find_candidates(y):
        if exact:
            return jnp.zeros((0, 2), jnp.int32)
        return objectives.grid_candidate_pairs(y, radius=radius)

    def step(carry, inputs):
        step_index, rotation, offsets = inputs
        params, opt_state, candidates = carry
        progress = step_index / n_steps
        # Close pairs change slowly; refreshing them every few steps is enough.
        candidates = jax.lax.cond(
            step_index % _CANDIDATE_REFRESH == 0,
            find_candidates,
            lambda _: candidates,
            params["coords"],
        )
        loss, grad = value_and_grad(params, candidates, rotation, offsets, progress)
        # The kernel shape is fitted only once the exaggeration phase is over.
        fit_kernel = jnp.float32(learn_kernel) * (progress >= 0.25)
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
    perplexity: float = 15.0,
    kernel_scale: float = 1.0,
    dof: float = 1.0,
    learn_kernel: bool = True,
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
        kernel_scale: initial Student-t scale in units of ``1 / sqrt(n_neurons)``.
        dof: initial degrees of freedom of the Student-t kernel.
        learn_kernel: fit ``dof`` and ``kernel_scale`` with the coordinates.
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
    coords = _initial_coords(features, init, init_key, metric)
    n = features.shape[0]
    if n < 2:
        return make_layout(coords, "optimize", losses=jnp.zeros((n_steps,)))
    # Coincident starting points (e.g. dead neurons) would feel identical forces.
    coords = coords + 1e-3 * jax.random.normal(init_key, coords.shape) / math.sqrt(n)
    affinities = layout_affinities(features, perplexity=perplexity, metric=metric)
    result = optimize_coords(
        coords,
        affinities,
        run_key,
        Weights() if weights is None else weights,
        optimizer=default_optimizer(n_steps) if optimizer is None else optimizer,
        n_steps=n_steps,
        kernel_scale=kernel_scale,
        dof=dof,
        learn_kernel=learn_kernel,
        core_radius=core_radius,
        n_frames=n_frames,
        exact=n <= EXACT_MAX if exact is None else exact,
        shape=shape,
    )
    return Layout(
        coords=_RESCALE[shape](result.coords),
        method="optimize",
        trajectory=result.trajectory if return_trajectory else None,
        losses=result.losses,
    )
