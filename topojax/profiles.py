"""Activation profiles: per-group activation sums streamed over batches, and NAPs.

Pipeline stage 2 (capture -> **profiles** -> layout). `profile` streams
``(x, group_ids)`` batches through a capture function and accumulates, per layer,
the sum of the activations of each group and the group sizes, on device. `naps`
turns a `LayerProfile` into the paper's Neuron Activation Profiles (group means
minus the unweighted mean over the groups), `layout_features` into the
``(n_neurons, n_features)`` input of a layout method. `sample_profiles` gives the
paper's other layout input: each neuron's raw activations over sampled inputs.

A *neuron* is one unit of a dense layer or one channel (last axis) of a conv
layer; the axes between the batch and the channels are spatial.

Accumulation is exact up to float32 rounding: each batch's per-group sums are
taken in float32 (``jax.ops.segment_sum``), and the running sums add them with
Kahan compensation, so the error does not grow with the number of batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

Spatial = Literal["mean", "keep"]
SPATIAL_MODES: tuple[str, ...] = get_args(Spatial)

CaptureFn = Callable[[Any], dict[str, jax.Array]]


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["sums", "counts"],
    meta_fields=["layer", "group_names"],
)
@dataclasses.dataclass(frozen=True)
class LayerProfile:
    """Per-group activation sums of one layer.

    Attributes:
        sums: ``(n_groups, *unit_shape)`` float32 sums of the activations of each
            group's inputs; ``unit_shape`` is ``(n_neurons,)`` for a dense layer,
            ``(height, width, n_neurons)`` for a 2-D conv layer.
        counts: ``(n_groups,)`` int32 number of inputs of each group.
        layer: layer name (static).
        group_names: ``(n_groups,)`` names of the groups (static).
    """

    sums: jax.Array
    counts: jax.Array
    layer: str
    group_names: tuple[str, ...]

    @property
    def n_groups(self) -> int:
        """Number of groups G."""
        return self.sums.shape[0]

    @property
    def n_neurons(self) -> int:
        """Number of neurons: units of a dense layer, channels of a conv layer."""
        return self.sums.shape[-1]

    @property
    def unit_shape(self) -> tuple[int, ...]:
        """Shape of one input's activations, e.g. ``(height, width, channels)``."""
        return tuple(self.sums.shape[1:])

    @property
    def empty(self) -> jax.Array:
        """``(n_groups,)`` bool: groups without any input."""
        return self.counts == 0

    @property
    def means(self) -> jax.Array:
        """``(n_groups, *unit_shape)`` group means; 0 for empty groups."""
        denominator = jnp.maximum(self.counts, 1).astype(self.sums.dtype)
        return self.sums / denominator.reshape((-1,) + (1,) * (self.sums.ndim - 1))


# --------------------------------------------------------------------------- #
# Streaming accumulation
# --------------------------------------------------------------------------- #


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["sums", "compensation", "counts", "nonfinite"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class _Accumulator:
    sums: dict[str, jax.Array]  # layer -> (G, *unit_shape) float32
    compensation: dict[str, jax.Array]  # Kahan running error, same shapes
    counts: jax.Array  # (G,) int32
    nonfinite: dict[str, jax.Array]  # layer -> () int32


def _zeros(unit_shapes: dict[str, tuple[int, ...]], n_groups: int) -> _Accumulator:
    sums = {
        name: jnp.zeros((n_groups, *shape), jnp.float32)
        for name, shape in unit_shapes.items()
    }
    return _Accumulator(
        sums=sums,
        compensation=jax.tree.map(jnp.zeros_like, sums),
        counts=jnp.zeros((n_groups,), jnp.int32),
        nonfinite={name: jnp.zeros((), jnp.int32) for name in unit_shapes},
    )


@jax.jit
def _accumulate(
    state: _Accumulator, activations: dict[str, jax.Array], group_ids: jax.Array
) -> _Accumulator:
    """Add one batch. Ids equal to ``n_groups`` mark padding and are dropped."""
    n_groups = state.counts.shape[0]
    valid = group_ids < n_groups
    # Under an explicit-sharding mesh (a data-parallel batch), summing over the
    # sharded batch axis must name its output sharding: replicated.
    mesh = jax.sharding.get_abstract_mesh()
    explicit = not mesh.empty and AxisType.Explicit in mesh.axis_types
    segment_sum = functools.partial(
        jax.ops.segment_sum,
        num_segments=n_groups,
        out_sharding=PartitionSpec() if explicit else None,
    )
    counts = state.counts + segment_sum(valid.astype(jnp.int32), group_ids)
    sums, compensation, nonfinite = {}, {}, {}
    for name, values in activations.items():
        values = values.astype(jnp.float32)
        batch_sums = segment_sum(values, group_ids)
        # Kahan: carry the rounding error of the running sum to the next batch.
        corrected = batch_sums - state.compensation[name]
        total = state.sums[name] + corrected
        compensation[name] = (total - state.sums[name]) - corrected
        sums[name] = total
        row_valid = valid.reshape((-1,) + (1,) * (values.ndim - 1))
        nonfinite[name] = state.nonfinite[name] + jnp.sum(
            ~jnp.isfinite(values) & row_valid, dtype=jnp.int32
        )
    return _Accumulator(sums, compensation, counts, nonfinite)


def _check_group_names(group_names: Sequence[str]) -> tuple[str, ...]:
    names = (group_names,) if isinstance(group_names, str) else tuple(group_names)
    if not names:
        raise ValueError("group_names must name at least one group; got none")
    if any(not isinstance(name, str) for name in names):
        raise TypeError(f"group_names must be strings; got {names!r}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"group_names must be unique; repeated: {duplicates}")
    return names


def _leading_sizes(x: Any) -> list[int]:
    leaves = jax.tree.leaves(x)
    if not leaves or any(np.ndim(leaf) < 1 for leaf in leaves):
        raise ValueError(
            "x must be an array (or pytree of arrays) with a leading batch axis; "
            f"got leaf shapes {[np.shape(leaf) for leaf in leaves]}"
        )
    return [np.shape(leaf)[0] for leaf in leaves]


def _check_batch(x: Any, group_ids: Any, n_groups: int, index: int) -> np.ndarray:
    """Validate one batch on the host; return the group ids as int32 NumPy."""
    ids = np.asarray(group_ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"batch {index}: group_ids must be a 1-D integer array; got shape "
            f"{ids.shape} dtype {ids.dtype}"
        )
    sizes = _leading_sizes(x)
    if any(size != ids.shape[0] for size in sizes):
        shown = sizes[0] if len(set(sizes)) == 1 else sizes
        raise ValueError(
            f"batch {index}: x has batch size {shown} but group_ids has "
            f"{ids.shape[0]} entries; expected one id per input"
        )
    if ids.shape[0] == 0:
        raise ValueError(f"batch {index} is empty; expected at least one input")
    bad = ids[(ids < 0) | (ids >= n_groups)]
    if bad.size:
        raise ValueError(
            f"batch {index}: {bad.size} group ids out of range [0, {n_groups}) "
            f"(values {sorted(set(bad.tolist()))[:10]}); there are {n_groups} "
            "group_names"
        )
    return ids.astype(np.int32)


def _check_neuron_axis(shapes: dict[str, tuple[int, ...]]) -> None:
    flat = {name: shape for name, shape in shapes.items() if len(shape) < 2}
    if flat:
        raise ValueError(
            f"activations {flat} have no neuron axis; expected (batch, ..., "
            "n_neurons), e.g. reshape a (batch,) output to (batch, 1)"
        )


def _pad_rows(x: Any, n_rows: int) -> Any:
    """Pad every leaf along axis 0 to ``n_rows`` by repeating its last row."""

    def pad(leaf):
        missing = n_rows - np.shape(leaf)[0]
        if missing == 0:
            return leaf
        xp = np if isinstance(leaf, np.ndarray) else jnp
        return xp.concatenate([leaf, xp.repeat(leaf[-1:], missing, axis=0)])

    return jax.tree.map(pad, x)


def _mesh_axis(mesh: Mesh) -> str:
    if len(mesh.axis_names) != 1:
        raise ValueError(
            f"mesh must be 1-D (one data-parallel axis); got axes {mesh.axis_names}"
        )
    return mesh.axis_names[0]


def shard_batch(x: Any, group_ids: Any, mesh: Mesh) -> tuple[Any, jax.Array]:
    """Place a batch on ``mesh``, split along the batch axis (data parallel).

    Args:
        x: input ``(batch, ...)`` array or pytree of arrays.
        group_ids: ``(batch,)`` integer group ids.
        mesh: a 1-D ``jax.sharding.Mesh``, e.g. ``jax.make_mesh((4,), ("data",))``.

    Returns:
        ``(x, group_ids)`` as ``jax.Array`` s sharded with
        ``NamedSharding(mesh, PartitionSpec(axis))`` on their first axis.

    Raises:
        ValueError: the mesh is not 1-D, or the batch size is not a multiple of
            the number of devices (`profile` pads batches to a multiple itself).
    """
    axis = _mesh_axis(mesh)
    n_devices = mesh.devices.size
    sizes = _leading_sizes((x, group_ids))
    if sizes[0] % n_devices:
        raise ValueError(
            f"batch size {sizes[0]} is not a multiple of the {n_devices} devices "
            f"of mesh axis {axis!r}; pad the batch first"
        )
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    return jax.device_put((x, group_ids), sharding)


def profile(
    capture_fn: CaptureFn,
    batches: Iterable[tuple[Any, Any]],
    group_names: Sequence[str],
    *,
    mesh: Mesh | None = None,
) -> dict[str, LayerProfile]:
    """Per-group activation sums and counts of every captured layer.

    Streams ``batches`` through ``capture_fn`` and one jitted accumulation step
    per batch; the sums stay on device (no host round trip per batch). A batch
    smaller than the first one (e.g. the last) is padded to the first batch's
    size with ignored rows, so all batches share one compiled program.
    Non-finite activations are counted on device and reported at the end.

    Args:
        capture_fn: ``fn(x) -> {layer: activations (batch, ..., n_neurons)}``,
            e.g. from `topojax.capture.make_capture`.
        batches: iterable of ``(x, group_ids)``: ``x`` ``(batch, ...)`` (array
            or pytree of arrays), ``group_ids`` ``(batch,)`` ints in
            ``[0, len(group_names))``.
        group_names: ``(n_groups,)`` group names, e.g. class names.
        mesh: optional 1-D device mesh: each batch is padded to a multiple of
            its size and sharded over it along the batch axis (data parallel).

    Returns:
        Dict mapping each layer name (in ``capture_fn``'s order) to its
        `LayerProfile`.

    Raises:
        ValueError: bad ``group_names``; for a batch (checked before it is
            computed): group ids not 1-D ints, out of range, or a count
            different from x's batch size; activations whose batch size or
            unit shape changes between batches; no batches; non-finite
            activations (after all batches: names the layer and the count).
    """
    group_names = _check_group_names(group_names)
    n_groups = len(group_names)
    if mesh is not None:
        _mesh_axis(mesh)
    context = contextlib.nullcontext() if mesh is None else jax.set_mesh(mesh)
    with context:
        state, unit_shapes = _stream(capture_fn, batches, n_groups, mesh)
    if state is None:
        raise ValueError("batches is empty; expected at least one (x, group_ids)")
    nonfinite = jax.device_get(state.nonfinite)
    bad = {name: int(count) for name, count in nonfinite.items() if count}
    if bad:
        raise ValueError(
            "non-finite activations (NaN/Inf): "
            + ", ".join(
                f"layer {name!r}: {count} values" for name, count in bad.items()
            )
        )
    return {
        name: LayerProfile(state.sums[name], state.counts, name, group_names)
        for name in unit_shapes
    }


def _stream(
    capture_fn: CaptureFn,
    batches: Iterable[tuple[Any, Any]],
    n_groups: int,
    mesh: Mesh | None,
) -> tuple[_Accumulator | None, dict[str, tuple[int, ...]]]:
    """The streaming loop of `profile`: validate, pad, shard, capture, add."""
    n_devices = 1 if mesh is None else mesh.devices.size
    state: _Accumulator | None = None
    unit_shapes: dict[str, tuple[int, ...]] = {}
    padded_size = 0
    for index, (x, group_ids) in enumerate(batches):
        ids = _check_batch(x, group_ids, n_groups, index)
        size = -(-ids.shape[0] // n_devices) * n_devices
        padded_size = max(padded_size, size)
        x = _pad_rows(x, padded_size)
        ids = np.concatenate(
            [ids, np.full(padded_size - ids.shape[0], n_groups, np.int32)]
        )
        if mesh is not None:
            x, ids = shard_batch(x, ids, mesh)
        activations = capture_fn(x)
        shapes = {name: tuple(np.shape(a)) for name, a in activations.items()}
        if state is None:
            if not shapes:
                raise ValueError("capture_fn returned no activations")
            _check_neuron_axis(shapes)
            unit_shapes = {name: shape[1:] for name, shape in shapes.items()}
            state = _zeros(unit_shapes, n_groups)
        expected = {name: (padded_size, *unit) for name, unit in unit_shapes.items()}
        if shapes != expected:
            raise ValueError(
                f"batch {index}: activation shapes {shapes} differ from the "
                f"expected {expected} (batch size {padded_size} after padding, "
                "unit shapes of the first batch)"
            )
        state = _accumulate(state, activations, ids)
    return state, unit_shapes


def array_batches(
    x: Any, group_ids: Any, batch_size: int
) -> Iterator[tuple[Any, np.ndarray]]:
    """Split in-memory data into ``(x, group_ids)`` batches for `profile`.

    Args:
        x: inputs ``(n, ...)`` (array or pytree of arrays).
        group_ids: ``(n,)`` integer group ids.
        batch_size: inputs per batch (the last batch may be smaller).

    Yields:
        ``(x[i:i + batch_size], group_ids[i:i + batch_size])``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    ids = np.asarray(group_ids)
    for start in range(0, ids.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        yield jax.tree.map(lambda leaf, rows=rows: leaf[rows], x), ids[rows]


# --------------------------------------------------------------------------- #
# NAPs and layout features
# --------------------------------------------------------------------------- #


def _spatial_mean(values: jax.Array) -> jax.Array:
    """``(G, *spatial, C)`` -> ``(G, C)``."""
    return values.mean(axis=tuple(range(1, values.ndim - 1)))


def _spatial_keep(values: jax.Array) -> jax.Array:
    """``(G, *spatial, C)`` -> ``(G, C, S)`` with ``S = prod(spatial)``."""
    n_groups, n_neurons = values.shape[0], values.shape[-1]
    return jnp.swapaxes(values.reshape(n_groups, -1, n_neurons), 1, 2)


_SPATIAL: dict[str, Callable[[jax.Array], jax.Array]] = {
    "mean": _spatial_mean,
    "keep": _spatial_keep,
}


def _check_spatial(spatial: str) -> Callable[[jax.Array], jax.Array]:
    if spatial not in _SPATIAL:
        raise ValueError(
            f"unknown spatial mode {spatial!r}; expected one of {list(SPATIAL_MODES)}"
        )
    return _SPATIAL[spatial]


@functools.partial(jax.jit, static_argnames=("normalize", "spatial"))
def _naps(
    sums: jax.Array, counts: jax.Array, normalize: bool, spatial: str
) -> jax.Array:
    # Arrays only (not the LayerProfile): its static layer name would make
    # every layer compile its own program.
    profile = LayerProfile(sums, counts, "", ())
    values = _SPATIAL[spatial](profile.means)
    present = ~profile.empty
    mask = present.reshape((-1,) + (1,) * (values.ndim - 1))
    if normalize:
        n_present = jnp.maximum(jnp.sum(present), 1).astype(values.dtype)
        centre = jnp.sum(jnp.where(mask, values, 0.0), axis=0) / n_present
        values = values - centre[None]
    return jnp.where(mask, values, 0.0)


def naps(
    profile: LayerProfile, *, normalize: bool = True, spatial: Spatial = "mean"
) -> jax.Array:
    """Neuron Activation Profiles: group means, centred over the groups.

    ``NAP_g = mean_g - (1/G') * sum over non-empty groups g' of mean_g'`` (the
    paper's normalisation, unweighted by group size; G' = non-empty groups).
    No ``1e-15`` is added: layout methods handle all-zero (dead) neurons.

    Args:
        profile: a `LayerProfile`.
        normalize: subtract the mean over non-empty groups; ``False`` gives the
            plain group means.
        spatial: ``"mean"`` averages the spatial positions of a conv layer (one
            value per channel, the paper's map colour); ``"keep"`` keeps them.

    Returns:
        ``(n_groups, n_neurons)`` for ``"mean"``, ``(n_groups, n_neurons,
        n_positions)`` for ``"keep"`` (``n_positions = height * width``, 1 for a
        dense layer). Rows of empty groups are 0 (see ``profile.empty``).

    Raises:
        ValueError: unknown ``spatial``.
    """
    _check_spatial(spatial)
    return _naps(profile.sums, profile.counts, bool(normalize), spatial)


def layout_features(
    profile: LayerProfile, *, normalize: bool = True, spatial: Spatial = "mean"
) -> jax.Array:
    """The layout input: one row per neuron, its NAPs over the non-empty groups.

    Args:
        profile: a `LayerProfile`.
        normalize: as in `naps`.
        spatial: as in `naps`; ``"keep"`` gives ``n_groups * n_positions``
            features per neuron (ordered group-major).

    Returns:
        ``(n_neurons, n_features)`` float32 with ``n_features`` = number of
        non-empty groups (times ``n_positions`` for ``"keep"``).

    Raises:
        ValueError: unknown ``spatial``, or every group is empty.
    """
    _check_spatial(spatial)
    present = np.flatnonzero(~np.asarray(profile.empty))
    if present.size == 0:
        raise ValueError(
            f"layer {profile.layer!r}: every group is empty; cannot build features"
        )
    return _layout_features(
        profile.sums, profile.counts, jnp.asarray(present), bool(normalize), spatial
    )


@functools.partial(jax.jit, static_argnames=("normalize", "spatial"))
def _layout_features(
    sums: jax.Array,
    counts: jax.Array,
    present: jax.Array,
    normalize: bool,
    spatial: str,
) -> jax.Array:
    values = _naps(sums, counts, normalize, spatial)[present]  # (G', N[, S])
    values = jnp.swapaxes(values, 0, 1)  # (N, G'[, S])
    return values.reshape(values.shape[0], -1)


# --------------------------------------------------------------------------- #
# Raw-sample profiles (the paper's use_naps = false)
# --------------------------------------------------------------------------- #


def sample_profiles(
    capture_fn: CaptureFn, x_sample: Any, *, spatial: Spatial = "keep"
) -> dict[str, jax.Array]:
    """Each neuron's raw activations over sampled inputs (layout input).

    Args:
        capture_fn: ``fn(x) -> {layer: activations (n_samples, ..., n_neurons)}``.
        x_sample: ``(n_samples, ...)`` inputs, e.g. picked by `balanced_sample`.
        spatial: ``"keep"`` (the paper) gives a conv layer
            ``n_samples * height * width`` features per channel (sample-major);
            ``"mean"`` averages the spatial positions first.

    Returns:
        Dict mapping each layer to ``(n_neurons, n_samples)`` (dense, or conv
        with ``"mean"``) or ``(n_neurons, n_samples * n_positions)`` float32.

    Raises:
        ValueError: unknown ``spatial``; non-finite activations (names the layer
            and the count).
    """
    _check_spatial(spatial)
    _leading_sizes(x_sample)
    activations = capture_fn(x_sample)
    _check_neuron_axis({name: np.shape(a) for name, a in activations.items()})
    counts = jax.device_get(
        {name: jnp.sum(~jnp.isfinite(a)) for name, a in activations.items()}
    )
    bad = {name: int(count) for name, count in counts.items() if count}
    if bad:
        raise ValueError(
            "non-finite activations (NaN/Inf): "
            + ", ".join(
                f"layer {name!r}: {count} values" for name, count in bad.items()
            )
        )
    return {name: _neuron_rows(values, spatial) for name, values in activations.items()}


@functools.partial(jax.jit, static_argnames="spatial")
def _neuron_rows(values: jax.Array, spatial: str) -> jax.Array:
    """``(E, *spatial, C)`` -> ``(C, E)`` or ``(C, E * S)`` float32."""
    values = _SPATIAL[spatial](values.astype(jnp.float32))  # (E, C) or (E, C, S)
    values = jnp.swapaxes(values, 0, 1)  # (C, E) or (C, E, S)
    return values.reshape(values.shape[0], -1)


def balanced_sample(key: jax.Array, labels: Any, n_per_group: int) -> np.ndarray:
    """Indices of up to ``n_per_group`` random inputs of every group.

    A group with fewer inputs contributes all of them (as in the paper).

    Args:
        key: PRNG key (``jax.random.key``).
        labels: ``(n,)`` non-negative integer group ids (e.g. class labels).
        n_per_group: inputs to draw per group (the paper: ``n // n_groups``
            for ``n`` inputs in all).

    Returns:
        ``(n_sampled,)`` int64 indices into ``labels``, grouped by increasing
        group id, in random order within a group.

    Raises:
        ValueError: ``labels`` not 1-D non-negative ints, or ``n_per_group < 1``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D integer array; got shape {labels.shape} "
            f"dtype {labels.dtype}"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0; got minimum {labels.min()}")
    if n_per_group < 1:
        raise ValueError(f"n_per_group must be >= 1; got {n_per_group}")
    priority = np.asarray(jax.random.uniform(key, labels.shape))
    # Sort by group, then by a random priority within the group.
    order = np.lexsort((priority, labels))
    sorted_labels = labels[order]
    first = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(labels.size) - first
    return order[rank < n_per_group].astype(np.int64)
