"""Aligning layouts so that the same region of a map means the same thing.

Three ways, for three situations:

- **Same neurons** (one layer, independently laid out checkpoints or seeds):
  `procrustes` / `align_layout`. Orthogonal Procrustes in closed form (one 2x2
  SVD): the rotation (with reflection unless ``reflection=False``), uniform
  scale and translation minimising ``sum_i w_i |s R x_i + t - y_i|^2``.
- **Different layers, matched by profiles** (`align_by_profiles`): neurons differ,
  but every neuron of every layer has a profile over the *same* groups (its NAP
  vector). Each neuron is given an anchor: the softmax(cosine similarity /
  temperature)-weighted mean position of the reference layer's neurons with
  similar profiles; then weighted Procrustes (weights = best similarity) maps the
  layout onto its anchors. Reflections are allowed.
- **Different layers, the paper's colour rotation search** (`rotation_search`,
  `align_by_colors`; paper-digest §5.3): try every rotation in 1° steps, rescale
  to ``[0, 1]^2`` after each, score ``mean(S_sp ⊙ S_col)`` with
  ``S_sp = √2 − |p_ref,i − p_rot,j|`` (entries below their median set to 0) and
  ``S_col = max(C) − C`` (``C``: Euclidean distances between the neurons'
  across-group colour vectors, each layer divided by its absmax), keep the best.
  The paper tries no reflections; ``reflection=True`` also tries the mirror
  image. All angles are scored with one vmapped function (in chunks of angles
  to bound memory).

Every ``align_*`` function returns a `Layout` whose coordinates are rescaled to
``[0, 1]^2`` (per axis, as every layout method does). `map_correlation` measures
how well two layers' rendered maps agree after alignment.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from topojax.layout.base import Layout, rescale_unit

_EPS = 1e-12


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["rotation", "scale", "translation", "aligned", "rmsd"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class Procrustes:
    """A similarity transform ``x -> scale * x @ rotation + translation``.

    Attributes:
        rotation: ``(2, 2)`` orthogonal matrix (determinant -1 when reflected),
            acting on row vectors.
        scale: ``()`` uniform scale.
        translation: ``(2,)``.
        aligned: ``(n, 2)`` the transformed source.
        rmsd: ``()`` weighted root-mean-square distance from ``aligned`` to the
            target.
    """

    rotation: jax.Array
    scale: jax.Array
    translation: jax.Array
    aligned: jax.Array
    rmsd: jax.Array

    @property
    def reflected(self) -> jax.Array:
        """Whether the transform includes a reflection (``det(rotation) < 0``)."""
        return jnp.linalg.det(self.rotation) < 0

    def apply(self, coords: jax.Array) -> jax.Array:
        """Transform other ``(m, 2)`` coordinates the same way."""
        return self.scale * coords @ self.rotation + self.translation[None]


def _check_coords(coords, what: str, n: int | None = None) -> jax.Array:
    array = np.asarray(coords)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{what} must be (n_neurons, 2); got shape {array.shape}")
    if n is not None and array.shape[0] != n:
        raise ValueError(
            f"{what} has {array.shape[0]} neurons; expected {n} (same neurons as "
            "the other layout; for different layers use align_by_profiles or "
            "align_by_colors)"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains non-finite values")
    return jnp.asarray(array, jnp.float32)


def _coords_of(layout) -> jax.Array:
    return layout.coords if isinstance(layout, Layout) else layout


@functools.partial(jax.jit, static_argnames=("reflection", "scale"))
def _procrustes(
    source: jax.Array,
    target: jax.Array,
    weights: jax.Array,
    reflection: bool,
    scale: bool,
) -> Procrustes:
    w = weights / jnp.maximum(weights.sum(), _EPS)
    mean_x = w @ source
    mean_y = w @ target
    xc = source - mean_x[None]
    yc = target - mean_y[None]
    cross = (xc * w[:, None]).T @ yc
    u, s, vt = jnp.linalg.svd(cross)
    if reflection:
        signs = jnp.ones(2, source.dtype)
    else:
        det = jnp.sign(jnp.linalg.det(u @ vt))
        signs = (
            jnp.array([1.0, 1.0], source.dtype).at[1].set(jnp.where(det < 0, -1.0, 1.0))
        )
    rotation = (u * signs[None]) @ vt
    var_x = jnp.sum(w[:, None] * xc * xc)
    if scale:
        factor = jnp.where(
            var_x > _EPS, jnp.sum(s * signs) / jnp.maximum(var_x, _EPS), 1.0
        )
    else:
        factor = jnp.asarray(1.0, source.dtype)
    translation = mean_y - factor * mean_x @ rotation
    aligned = factor * source @ rotation + translation[None]
    rmsd = jnp.sqrt(jnp.sum(w * jnp.sum((aligned - target) ** 2, axis=1)))
    return Procrustes(rotation, factor, translation, aligned, rmsd)


def procrustes(
    source,
    target,
    *,
    weights=None,
    reflection: bool = True,
    scale: bool = True,
) -> Procrustes:
    """Closed-form similarity transform of ``source`` onto ``target`` (same points).

    Minimises ``sum_i w_i |s * source_i @ R + t - target_i|^2`` over orthogonal
    ``R`` (a rotation, or also a reflection if ``reflection``), scale ``s > 0``
    (fixed to 1 unless ``scale``) and translation ``t``, with the SVD of the
    ``2 x 2`` weighted cross-covariance (Umeyama 1991).

    Args:
        source: ``(n, 2)`` coordinates to move.
        target: ``(n, 2)`` coordinates of the same points to match.
        weights: optional ``(n,)`` non-negative weights (default equal).
        reflection: allow a reflection.
        scale: fit a uniform scale.

    Returns:
        `Procrustes` with the transform, ``aligned`` ``(n, 2)`` and ``rmsd``.

    Raises:
        ValueError: shapes differ or are not ``(n, 2)``, or bad weights.
    """
    source = _check_coords(source, "source")
    target = _check_coords(target, "target", source.shape[0])
    if weights is None:
        weights = jnp.ones(source.shape[0], jnp.float32)
    else:
        weights = np.asarray(weights, np.float32)
        if weights.shape != (source.shape[0],) or (weights < 0).any():
            raise ValueError(
                f"weights must be ({source.shape[0]},) non-negative; got shape "
                f"{weights.shape}"
            )
        weights = jnp.asarray(weights)
    return _procrustes(source, target, weights, reflection, scale)


def align_layout(layout, reference, *, reflection: bool = True) -> Layout:
    """Align a layout of the same neurons to a reference layout (Procrustes).

    Args:
        layout: `Layout` or ``(n, 2)`` coordinates to move.
        reference: `Layout` or ``(n, 2)`` coordinates of the same neurons.
        reflection: allow a reflection.

    Returns:
        `Layout` with the aligned coordinates, rescaled to ``[0, 1]^2``.
    """
    result = procrustes(
        _coords_of(layout), _coords_of(reference), reflection=reflection
    )
    method = layout.method if isinstance(layout, Layout) else "aligned"
    return Layout(coords=rescale_unit(result.aligned), method=method)


def align_sequence(
    layouts: Sequence, *, reference: int = -1, reflection: bool = True
) -> list[Layout]:
    """Align independently made layouts of the same neurons (e.g. per checkpoint).

    Args:
        layouts: `Layout` objects or ``(n, 2)`` arrays, all of the same neurons.
        reference: index of the layout the others are aligned to (default the
            last, i.e. the final checkpoint); it is returned unchanged.
        reflection: allow reflections.

    Returns:
        list of `Layout`.
    """
    if not layouts:
        raise ValueError("layouts is empty; expected at least one layout")
    ref = _coords_of(layouts[reference])
    ref_index = reference % len(layouts)
    out = []
    for i, layout in enumerate(layouts):
        if i == ref_index:
            method = layout.method if isinstance(layout, Layout) else "aligned"
            out.append(Layout(coords=jnp.asarray(ref, jnp.float32), method=method))
        else:
            out.append(align_layout(layout, ref, reflection=reflection))
    return out


def _unit_rows(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), _EPS)


@functools.partial(jax.jit, static_argnames=("reflection",))
def _profile_anchors(
    coords, profiles, ref_coords, ref_profiles, temperature, reflection
) -> Procrustes:
    similarity = _unit_rows(profiles) @ _unit_rows(ref_profiles).T
    attention = jax.nn.softmax(similarity / temperature, axis=1)
    anchors = attention @ ref_coords
    weights = jnp.maximum(similarity.max(axis=1), 0.0) + _EPS
    return _procrustes(coords, anchors, weights, reflection, True)


def _check_profiles(profiles, n: int, what: str) -> jax.Array:
    array = np.asarray(profiles, np.float32)
    if array.ndim != 2 or array.shape[0] != n:
        raise ValueError(
            f"{what} must be (n_neurons={n}, n_groups); got shape {array.shape}"
        )
    return jnp.asarray(array)


def align_by_profiles(
    layout,
    profiles,
    reference,
    reference_profiles,
    *,
    temperature: float = 0.1,
    reflection: bool = True,
) -> Layout:
    """Align a layer's layout to another layer's by matching neuron profiles.

    Each neuron ``j`` gets the anchor ``sum_i softmax_i(cos(p_j, q_i) / T) r_i``
    (``q_i``, ``r_i``: profile and position of reference neuron ``i``); weighted
    Procrustes (weight ``max(0, max_i cos(p_j, q_i))``) then moves the layout
    onto its anchors. The profiles must be over the same groups in both layers
    (e.g. both layers' NAPs transposed, ``(n_neurons, G)``).

    Args:
        layout: `Layout` or ``(n, 2)``.
        profiles: ``(n, G)`` profile of each neuron of ``layout``.
        reference: `Layout` or ``(m, 2)`` of the reference layer.
        reference_profiles: ``(m, G)``.
        temperature: softmax temperature on cosine similarities (smaller: anchor
            on the single most similar neuron).
        reflection: allow a reflection.

    Returns:
        `Layout` rescaled to ``[0, 1]^2``.
    """
    coords = _check_coords(_coords_of(layout), "layout")
    ref_coords = _check_coords(_coords_of(reference), "reference")
    profiles = _check_profiles(profiles, coords.shape[0], "profiles")
    reference_profiles = _check_profiles(
        reference_profiles, ref_coords.shape[0], "reference_profiles"
    )
    if profiles.shape[1] != reference_profiles.shape[1]:
        raise ValueError(
            f"profiles have {profiles.shape[1]} groups but reference_profiles have "
            f"{reference_profiles.shape[1]}; expected the same groups"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    result = _profile_anchors(
        coords, profiles, ref_coords, reference_profiles, temperature, reflection
    )
    method = layout.method if isinstance(layout, Layout) else "aligned"
    return Layout(coords=rescale_unit(result.aligned), method=method)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["coords", "angle", "reflected", "scores"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class RotationSearch:
    """Result of the colour-based rotation search.

    Attributes:
        coords: ``(n, 2)`` best rotated layout, rescaled to ``[0, 1]^2``.
        angle: ``()`` best angle in degrees (counter-clockwise).
        reflected: ``()`` bool, whether the mirror image (x -> -x) was best.
        scores: ``(n_candidates,)`` score of every candidate: the angles of the
            unreflected layout, then (with ``reflection``) of the mirrored one.
    """

    coords: jax.Array
    angle: jax.Array
    reflected: jax.Array
    scores: jax.Array


def rotate(coords: jax.Array, degrees: jax.Array) -> jax.Array:
    """Rotate ``(n, 2)`` coordinates counter-clockwise about their centroid."""
    theta = jnp.deg2rad(degrees)
    c, s = jnp.cos(theta), jnp.sin(theta)
    matrix = jnp.stack([jnp.stack([c, s]), jnp.stack([-s, c])])
    centre = coords.mean(axis=0)
    return (coords - centre[None]) @ matrix + centre[None]


def _color_similarity(colors, ref_colors) -> jax.Array:
    a = ref_colors / jnp.maximum(jnp.abs(ref_colors).max(), _EPS)
    b = colors / jnp.maximum(jnp.abs(colors).max(), _EPS)
    sq = jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :] - 2 * a @ b.T
    distance = jnp.sqrt(jnp.maximum(sq, 0.0))
    return distance.max() - distance


def _score(candidate, ref_coords, color_similarity) -> jax.Array:
    diff = ref_coords[:, None, :] - candidate[None, :, :]
    spatial = jnp.sqrt(2.0) - jnp.sqrt(jnp.sum(diff * diff, axis=-1) + 1e-30)
    spatial = jnp.where(spatial < jnp.median(spatial), 0.0, spatial)
    return jnp.mean(spatial * color_similarity)


@functools.partial(jax.jit, static_argnames=("n_angles", "reflection", "batch_size"))
def _rotation_search(
    coords, colors, ref_coords, ref_colors, n_angles, reflection, rescale, batch_size
) -> RotationSearch:
    color_similarity = _color_similarity(colors, ref_colors)
    angles = jnp.arange(n_angles, dtype=jnp.float32) * (360.0 / n_angles)
    flips = [False, True] if reflection else [False]
    flip_ids = jnp.repeat(jnp.arange(len(flips)), n_angles)
    all_angles = jnp.tile(angles, len(flips))

    ref_centre = ref_coords.mean(axis=0)

    def candidate(angle, flip):
        mirrored = jnp.where(flip > 0, coords * jnp.array([[-1.0, 1.0]]), coords)
        rotated = rotate(mirrored, angle)
        # rescale is a traced bool: both variants share one compilation
        return jnp.where(
            rescale,
            rescale_unit(rotated),
            rotated - rotated.mean(axis=0)[None] + ref_centre[None],
        )

    def score_one(args):
        angle, flip = args
        return _score(candidate(angle, flip), ref_coords, color_similarity)

    scores = jax.lax.map(score_one, (all_angles, flip_ids), batch_size=batch_size)
    best = jnp.argmax(scores)
    return RotationSearch(
        coords=rescale_unit(candidate(all_angles[best], flip_ids[best])),
        angle=all_angles[best],
        reflected=flip_ids[best] > 0,
        scores=scores,
    )


def rotation_search(
    layout,
    colors,
    reference,
    reference_colors,
    *,
    n_angles: int = 360,
    reflection: bool = False,
    rescale: bool = True,
    max_batch_elements: int = 2**24,
) -> RotationSearch:
    """The paper's colour-based rotation search (§5.3), vectorised over angles.

    Args:
        layout: `Layout` or ``(n, 2)`` of the layer to rotate.
        colors: ``(n, G)`` the value drawn for each neuron in each group (its
            NAPs transposed).
        reference: `Layout` or ``(m, 2)`` of the reference layer.
        reference_colors: ``(m, G)`` over the same groups.
        n_angles: number of equally spaced angles (360: 1° steps).
        reflection: also try the mirror image (the paper does not).
        rescale: rescale every rotated candidate to ``[0, 1]^2`` per axis before
            scoring, as the paper does. The rescaling changes the spread of the
            points with the angle and biases the optimum: on synthetic layouts
            with smooth colours the best paper score lies ~10-15° away from the
            true rotation. ``False`` rotates about the centroid without
            rescaling (only the result is rescaled) and finds it within ~1°.
        max_batch_elements: bound on ``angles_per_batch * n * m`` so that memory
            stays bounded for large layers.

    Returns:
        `RotationSearch`.
    """
    coords = _check_coords(_coords_of(layout), "layout")
    ref_coords = _check_coords(_coords_of(reference), "reference")
    colors = _check_profiles(colors, coords.shape[0], "colors")
    reference_colors = _check_profiles(
        reference_colors, ref_coords.shape[0], "reference_colors"
    )
    if colors.shape[1] != reference_colors.shape[1]:
        raise ValueError(
            f"colors have {colors.shape[1]} groups but reference_colors have "
            f"{reference_colors.shape[1]}; expected the same groups"
        )
    if n_angles < 1:
        raise ValueError(f"n_angles must be >= 1; got {n_angles}")
    per_angle = coords.shape[0] * ref_coords.shape[0]
    batch_size = int(max(1, min(n_angles, max_batch_elements // max(per_angle, 1))))
    return _rotation_search(
        coords,
        colors,
        rescale_unit(ref_coords),
        reference_colors,
        n_angles,
        reflection,
        jnp.asarray(bool(rescale)),
        batch_size,
    )


def align_by_colors(
    layout,
    colors,
    reference,
    reference_colors,
    *,
    n_angles: int = 360,
    reflection: bool = False,
    rescale: bool = True,
) -> Layout:
    """Align a layer to a reference layer by the paper's colour rotation search.

    See `rotation_search`; returns its best layout as a `Layout`.
    """
    result = rotation_search(
        layout,
        colors,
        reference,
        reference_colors,
        n_angles=n_angles,
        reflection=reflection,
        rescale=rescale,
    )
    method = layout.method if isinstance(layout, Layout) else "aligned"
    return Layout(coords=result.coords, method=method)


LayerAlignment = Literal[
    "profiles", "colors", "colors+reflection", "colors-norescale", "none"
]


def _none(layout, profiles, reference, reference_profiles):
    del profiles, reference, reference_profiles
    return layout if isinstance(layout, Layout) else Layout(layout, "aligned")


LAYER_ALIGNMENTS = {
    "profiles": align_by_profiles,
    "colors": align_by_colors,
    "colors+reflection": functools.partial(align_by_colors, reflection=True),
    "colors-norescale": functools.partial(align_by_colors, rescale=False),
    "none": _none,
}


def align_layers(
    layouts: Mapping[str, Layout],
    profiles: Mapping[str, jax.Array],
    *,
    reference: str | None = None,
    method: LayerAlignment = "profiles",
) -> dict[str, Layout]:
    """Align every layer's layout to a reference layer (default the first).

    Args:
        layouts: layer name -> `Layout` (different neurons per layer).
        profiles: layer name -> ``(n_neurons, G)`` profiles or colours over the
            same groups in every layer (e.g. ``naps.T``).
        reference: name of the reference layer, returned unchanged.
        method: ``"profiles"`` (`align_by_profiles`), ``"colors"`` (the paper's
            rotation search, `align_by_colors`), ``"colors+reflection"`` or
            ``"none"``.

    Returns:
        layer name -> aligned `Layout`.
    """
    if method not in LAYER_ALIGNMENTS:
        raise ValueError(
            f"unknown alignment method {method!r}; expected one of "
            f"{sorted(LAYER_ALIGNMENTS)}"
        )
    names = list(layouts)
    if not names:
        return {}
    reference = names[0] if reference is None else reference
    if reference not in layouts:
        raise ValueError(f"reference layer {reference!r} not in {names}")
    missing = [n for n in names if n not in profiles]
    if missing:
        raise ValueError(f"profiles missing for layers {missing}")
    fn = LAYER_ALIGNMENTS[method]
    return {
        name: layouts[name]
        if name == reference
        else fn(layouts[name], profiles[name], layouts[reference], profiles[reference])
        for name in names
    }


def map_correlation(
    coords_a, values_a, coords_b, values_b, *, resolution: int = 64
) -> float:
    """Agreement of two layers' maps: mean over groups of the pixel correlation.

    Both layouts are rendered (linear interpolation) with their ``(G, n)``
    values; for each group, the Pearson correlation of the two images over the
    pixels inside both convex hulls is taken; the mean over groups is returned.
    1 means the same pattern at the same places, 0 no relation. Used to compare
    alignment methods across layers.

    Returns:
        Python float in ``[-1, 1]`` (NaN if the hulls do not overlap).
    """
    from topojax.render import render

    images_a = np.asarray(render(_coords_of(coords_a), values_a, resolution=resolution))
    images_b = np.asarray(render(_coords_of(coords_b), values_b, resolution=resolution))
    inside = np.isfinite(images_a[0]) & np.isfinite(images_b[0])
    if inside.sum() < 3:
        return float("nan")
    correlations = []
    for a, b in zip(images_a, images_b, strict=True):
        a, b = a[inside] - a[inside].mean(), b[inside] - b[inside].mean()
        denominator = np.sqrt((a * a).sum() * (b * b).sum())
        correlations.append((a * b).sum() / denominator if denominator > 0 else 0.0)
    return float(np.mean(correlations))


__all__ = [
    "LAYER_ALIGNMENTS",
    "LayerAlignment",
    "Procrustes",
    "RotationSearch",
    "align_by_colors",
    "align_by_profiles",
    "align_layers",
    "align_layout",
    "align_sequence",
    "map_correlation",
    "procrustes",
    "rotate",
    "rotation_search",
]
