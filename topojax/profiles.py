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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

SpatialMode = Literal["mean", "keep", "flatten"]
SPATIAL_MODES: tuple[str, ...] = get_args(SpatialMode)
# A mode, or the index of one position (e.g. a token: 0 is a CLS token, -1 the
# last token), counted over the flattened positions between batch and neurons.
Spatial = SpatialMode | int

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
    if group_ids.ndim == 2:  # per-token groups: every token is one input
        activations = {
            name: a.reshape(-1, *a.shape[2:]) for name, a in activations.items()
        }
        group_ids = group_ids.reshape(-1)
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


def _check_batch(
    x: Any,
    group_ids: Any,
    n_groups: int,
    index: int,
    set_name: str = "",
    exclusion: bool = False,
) -> np.ndarray:
    """Validate one batch on the host; return the group ids as int32 NumPy.

    With ``exclusion``, ids equal to ``n_groups`` are allowed (the input is not
    in that set; `profile_sets`).
    """
    ids = np.asarray(group_ids)
    where = f"batch {index}" + (f", set {set_name!r}" if set_name else "")
    if ids.ndim not in (1, 2) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"{where}: group_ids must be a 1-D (or per-token 2-D) integer array; "
            f"got shape {ids.shape} dtype {ids.dtype}"
        )
    sizes = _leading_sizes(x)
    if any(size != ids.shape[0] for size in sizes):
        shown = sizes[0] if len(set(sizes)) == 1 else sizes
        raise ValueError(
            f"{where}: x has batch size {shown} but group_ids has "
            f"{ids.shape[0]} entries; expected one id per input"
        )
    if ids.shape[0] == 0:
        raise ValueError(f"batch {index} is empty; expected at least one input")
    top = n_groups + 1 if exclusion else n_groups
    bad = ids[(ids < 0) | (ids >= top)]
    if bad.size:
        raise ValueError(
            f"{where}: {bad.size} group ids out of range [0, {top}) "
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

    Per-token groups: when ``group_ids`` is ``(batch, T)`` and every layer's
    activations are ``(batch, T, ..., n_neurons)`` (e.g. a transformer's
    tokens), each token is one input of the group its id names (counts are
    token counts).

    Args:
        capture_fn: ``fn(x) -> {layer: activations (batch, ..., n_neurons)}``,
            e.g. from `topojax.capture.make_capture`.
        batches: iterable of ``(x, group_ids)``: ``x`` ``(batch, ...)`` (array
            or pytree of arrays), ``group_ids`` ``(batch,)`` (or ``(batch, T)``
            per token) ints in ``[0, len(group_names))``.
        group_names: ``(n_groups,)`` group names, e.g. class names.
        mesh: optional 1-D device mesh: each batch is padded to a multiple of
            its size and sharded over it along the batch axis (data parallel).

    Returns:
        Dict mapping each layer name (in ``capture_fn``'s order) to its
        `LayerProfile`.

    Raises:
        ValueError: bad ``group_names``; for a batch (checked before it is
            computed): group ids not ints, out of range, or a count
            different from x's batch size; activations whose batch size or
            unit shape changes between batches; no batches; non-finite
            activations (after all batches: names the layer and the count).
    """
    sets = _profile_sets(
        capture_fn,
        (({"": ids}, x) for x, ids in batches),
        {"": group_names},
        mesh,
        exclusion=False,
    )
    return sets[""]


def profile_sets(
    capture_fn: CaptureFn,
    batches: Iterable[tuple[Mapping[str, Any], Any]],
    group_names: Mapping[str, Sequence[str]],
    *,
    mesh: Mesh | None = None,
) -> dict[str, dict[str, LayerProfile]]:
    """`profile` for several groupings of the same inputs, one capture per batch.

    Each batch is ``({set_name: group_ids}, x)``; an id equal to the set's
    number of groups leaves that input out of that set (e.g. an input sampled
    for one grouping but not for another), so one forward pass serves every
    grouping.

    Args:
        capture_fn: as in `profile`.
        batches: iterable of ``(ids_by_set, x)``: ``ids_by_set`` maps every key
            of ``group_names`` to ``(batch,)`` (or ``(batch, T)``) int ids in
            ``[0, n_groups]`` (``n_groups``: not in this set).
        group_names: ``{set_name: (n_groups,) names}``.
        mesh: as in `profile`.

    Returns:
        ``{set_name: {layer: LayerProfile}}``.

    Raises:
        ValueError: as `profile`, naming the set.
    """
    return _profile_sets(capture_fn, batches, group_names, mesh, exclusion=True)


def _profile_sets(
    capture_fn: CaptureFn,
    batches: Iterable[tuple[Mapping[str, Any], Any]],
    group_names: Mapping[str, Sequence[str]],
    mesh: Mesh | None,
    *,
    exclusion: bool,
) -> dict[str, dict[str, LayerProfile]]:
    names = {
        set_name: _check_group_names(set_names)
        for set_name, set_names in dict(group_names).items()
    }
    if not names:
        raise ValueError("group_names must hold at least one grouping; got none")
    if mesh is not None:
        _mesh_axis(mesh)
    context = contextlib.nullcontext() if mesh is None else jax.set_mesh(mesh)
    with context:
        states, unit_shapes = _stream(capture_fn, batches, names, mesh, exclusion)
    if states is None:
        raise ValueError("batches is empty; expected at least one (x, group_ids)")
    first = next(iter(states.values()))
    nonfinite = jax.device_get(first.nonfinite)
    bad = {name: int(count) for name, count in nonfinite.items() if count}
    if bad:
        raise ValueError(
            "non-finite activations (NaN/Inf): "
            + ", ".join(
                f"layer {name!r}: {count} values" for name, count in bad.items()
            )
        )
    return {
        set_name: {
            layer: LayerProfile(state.sums[layer], state.counts, layer, names[set_name])
            for layer in unit_shapes
        }
        for set_name, state in states.items()
    }


def _stream(
    capture_fn: CaptureFn,
    batches: Iterable[tuple[Mapping[str, Any], Any]],
    group_names: dict[str, tuple[str, ...]],
    mesh: Mesh | None,
    exclusion: bool,
) -> tuple[dict[str, _Accumulator] | None, dict[str, tuple[int, ...]]]:
    """The streaming loop of `profile_sets`: validate, pad, shard, capture, add."""
    n_devices = 1 if mesh is None else mesh.devices.size
    states: dict[str, _Accumulator] | None = None
    unit_shapes: dict[str, tuple[int, ...]] = {}
    padded_size = 0
    for index, (ids_by_set, x) in enumerate(batches):
        if set(ids_by_set) != set(group_names):
            raise ValueError(
                f"batch {index}: group ids for sets {sorted(ids_by_set)}; expected "
                f"{sorted(group_names)}"
            )
        ids = {
            set_name: _check_batch(
                x, ids_by_set[set_name], len(set_names), index, set_name, exclusion
            )
            for set_name, set_names in group_names.items()
        }
        n_rows = _leading_sizes(x)[0]
        size = -(-n_rows // n_devices) * n_devices
        padded_size = max(padded_size, size)
        x = _pad_rows(x, padded_size)
        ids = {
            set_name: _pad_ids(set_ids, padded_size, len(group_names[set_name]))
            for set_name, set_ids in ids.items()
        }
        if mesh is not None:
            x, ids = shard_batch(x, ids, mesh)
        activations = capture_fn(x)
        shapes = {name: tuple(np.shape(a)) for name, a in activations.items()}
        if states is None:
            if not shapes:
                raise ValueError("capture_fn returned no activations")
            _check_neuron_axis(shapes)
            unit_shapes = {name: shape[1:] for name, shape in shapes.items()}
            for set_name, set_ids in ids.items():
                _check_token_ids(set_ids, unit_shapes, set_name)
            states = {
                set_name: _zeros(
                    _accumulated_shapes(unit_shapes, np.ndim(ids[set_name])),
                    len(set_names),
                )
                for set_name, set_names in group_names.items()
            }
        expected = {name: (padded_size, *unit) for name, unit in unit_shapes.items()}
        if shapes != expected:
            raise ValueError(
                f"batch {index}: activation shapes {shapes} differ from the "
                f"expected {expected} (batch size {padded_size} after padding, "
                "unit shapes of the first batch)"
            )
        for set_name in group_names:
            _check_token_ids(ids[set_name], unit_shapes, set_name)
            states[set_name] = _accumulate(states[set_name], activations, ids[set_name])
    return states, unit_shapes


def _accumulated_shapes(
    unit_shapes: dict[str, tuple[int, ...]], ids_ndim: int
) -> dict[str, tuple[int, ...]]:
    """Per-token ids ``(batch, T)`` fold the token axis into the inputs."""
    return {name: shape[ids_ndim - 1 :] for name, shape in unit_shapes.items()}


def _check_token_ids(
    ids: Any, unit_shapes: dict[str, tuple[int, ...]], set_name: str
) -> None:
    if np.ndim(ids) == 1:
        return
    n_tokens = np.shape(ids)[1]
    bad = {
        name: shape
        for name, shape in unit_shapes.items()
        if len(shape) < 2 or shape[0] != n_tokens
    }
    if bad:
        where = f" of set {set_name!r}" if set_name else ""
        raise ValueError(
            f"per-token group ids{where} have {n_tokens} tokens per input but "
            f"layers {bad} do not have unit shape ({n_tokens}, ..., n_neurons)"
        )


def _pad_ids(ids: np.ndarray, n_rows: int, n_groups: int) -> np.ndarray:
    """Pad ids along axis 0 with ``n_groups`` (ignored rows)."""
    missing = n_rows - ids.shape[0]
    if missing == 0:
        return ids
    padding = np.full((missing, *ids.shape[1:]), n_groups, np.int32)
    return np.concatenate([ids, padding])


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


def _spatial_flatten(values: jax.Array) -> jax.Array:
    """``(G, *spatial, C)`` -> ``(G, prod(spatial) * C)``: every unit a neuron."""
    return values.reshape(values.shape[0], -1)


def _spatial_position(index: int) -> Callable[[jax.Array], jax.Array]:
    """``(G, *spatial, C)`` -> ``(G, C)``: the values at one flattened position."""

    def select(values: jax.Array) -> jax.Array:
        flat = values.reshape(values.shape[0], -1, values.shape[-1])
        if not -flat.shape[1] <= index < flat.shape[1]:
            raise ValueError(
                f"spatial position {index} is out of range for {flat.shape[1]} "
                f"positions (activations of unit shape {values.shape[1:]})"
            )
        return flat[:, index]

    return select


_SPATIAL: dict[str, Callable[[jax.Array], jax.Array]] = {
    "mean": _spatial_mean,
    "keep": _spatial_keep,
    "flatten": _spatial_flatten,
}


def _check_spatial(spatial: Spatial) -> Callable[[jax.Array], jax.Array]:
    if isinstance(spatial, int | np.integer) and not isinstance(spatial, bool):
        return _spatial_position(int(spatial))
    if spatial not in _SPATIAL:
        raise ValueError(
            f"unknown spatial mode {spatial!r}; expected one of {list(SPATIAL_MODES)} "
            "or an int position"
        )
    return _SPATIAL[spatial]


def reduce_units(activations: jax.Array, spatial: Spatial = "mean") -> jax.Array:
    """One row per input: ``(batch, *spatial, C)`` -> ``(batch, n_neurons)``.

    The per-input form of the reduction `naps` applies to group means, so that
    per-input values (e.g. top-activating inputs) and NAPs agree on what a
    neuron is.

    Args:
        activations: ``(batch, ..., C)`` activations of one layer.
        spatial: ``"mean"`` (one neuron per channel: mean over the axes between
            batch and channels, e.g. a conv layer's positions or a
            transformer's tokens), ``"flatten"`` (every position and channel a
            neuron), or an int position (e.g. ``0``: a CLS token, ``-1``: the
            last token). ``"keep"`` is for layout features only.

    Returns:
        ``(batch, n_neurons)`` float32.

    Raises:
        ValueError: ``"keep"``, an unknown mode, or a position out of range.
    """
    if isinstance(spatial, str) and spatial == "keep":
        raise ValueError(
            "spatial='keep' gives several values per neuron; reduce_units needs "
            "'mean', 'flatten' or an int position"
        )
    reduce = _check_spatial(spatial)
    values = jnp.asarray(activations, jnp.float32)
    if values.ndim < 2:
        raise ValueError(
            f"activations of shape {values.shape} have no neuron axis; expected "
            "(batch, ..., n_neurons)"
        )
    return reduce(values)


@functools.partial(jax.jit, static_argnames=("normalize", "spatial"))
def _naps(
    sums: jax.Array, counts: jax.Array, normalize: bool, spatial: str
) -> jax.Array:
    # Arrays only (not the LayerProfile): its static layer name would make
    # every layer compile its own program.
    profile = LayerProfile(sums, counts, "", ())
    values = _check_spatial(spatial)(profile.means)
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
    values = _check_spatial(spatial)(values.astype(jnp.float32))  # (E, C[, S])
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
