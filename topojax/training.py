"""Maps across training: NAP snapshots of checkpoints on one fixed layout.

Two ways to get the per-checkpoint NAPs, both with one compiled program:

- **During training, no checkpoints saved**: `make_nap_recorder` returns a jitted
  ``recorder(state) -> {layer: naps (G, N)}`` for fixed inputs and groups; call
  it every ``k`` steps inside your own optax loop and `stack_snapshots` the
  results. Each call costs one forward pass over the fixed inputs; the result
  stays on device.
- **From saved checkpoints**: `profile_checkpoints` runs the same recorder over a
  sequence of checkpoints: NNX states (``nnx.state(model)``, or the
  ``(graphdef, state)`` pair of ``nnx.split(model)``), NNX modules, or Linen
  ``variables`` dicts; `load_orbax_checkpoints` reads an Orbax checkpoint
  directory (needs the optional ``orbax-checkpoint`` package).

Checkpoints of one architecture share shapes, so the capture is compiled once and
reused for all of them.

`training_maps` then lays out each layer's neurons **once**, so that every frame
uses the same positions and frames are comparable:

- ``layout_on="final"`` (default; the choice of the paper's training videos):
  features are the final checkpoint's NAPs ``(N, G)``. Positions reflect what
  the neurons end up doing; earlier frames show how that arrangement emerges.
- ``layout_on="joint"``: features are the NAPs of all checkpoints concatenated,
  ``(N, T * G)``. Neurons are placed by their whole trajectory, which helps when
  early training is of interest or the final profiles are degenerate.

`render_frames` draws every checkpoint with **one shared colour limit** per layer
(``±max |NAP|`` over all checkpoints and groups), `write_animation` writes a GIF
or APNG with one frame per checkpoint, and `training_series` gives the gallery's
`TrainingSeries` (a page with an epoch slider).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from topojax.capture import make_state_capture, post_activation_layers
from topojax.gallery.model import TrainingSeries
from topojax.groups import by_label
from topojax.layout.base import Layout
from topojax.profiles import LayerProfile, Spatial, naps

LayoutOn = Literal["final", "joint"]
StateCaptureFn = Callable[[Any, Any], dict[str, jax.Array]]


# --------------------------------------------------------------------------- #
# Recording NAP snapshots
# --------------------------------------------------------------------------- #


def _snapshot(
    capture_fn: StateCaptureFn,
    group_names: tuple[str, ...],
    normalize: bool,
    spatial: str,
    state: Any,
    x: Any,
    group_ids: jax.Array,
) -> dict[str, jax.Array]:
    """NAPs of every captured layer; ``x`` is ``(n_batches, batch, ...)``."""
    n_groups = len(group_names)
    flat_ids = group_ids.reshape(-1)
    counts = jax.ops.segment_sum(
        (flat_ids < n_groups).astype(jnp.int32), flat_ids, num_segments=n_groups
    )

    def batch_sums(carry, batch):
        xb, ids = batch
        activations = capture_fn(state, xb)
        sums = {
            name: jax.ops.segment_sum(a.astype(jnp.float32), ids, num_segments=n_groups)
            for name, a in activations.items()
        }
        if carry is not None:
            sums = jax.tree.map(jnp.add, carry, sums)
        return sums, None

    first, _ = batch_sums(None, jax.tree.map(lambda a: a[0], (x, group_ids)))
    if group_ids.shape[0] > 1:
        first, _ = jax.lax.scan(
            batch_sums, first, jax.tree.map(lambda a: a[1:], (x, group_ids))
        )
    return {
        name: naps(
            LayerProfile(sums, counts, name, group_names),
            normalize=normalize,
            spatial=spatial,
        )
        for name, sums in first.items()
    }


@dataclasses.dataclass(frozen=True)
class NapRecorder:
    """A jitted ``recorder(state) -> {layer: naps (G, N)}`` for fixed inputs.

    Attributes:
        group_names: ``(G,)`` names of the groups.
        counts: ``(G,)`` host int64 number of inputs per group.
        x: the fixed inputs, reshaped to ``(n_batches, batch, ...)`` (the last
            batch padded by repeating the last input; padding is ignored).
        group_ids: ``(n_batches, batch)`` int32 ids (``G`` marks padding).
        compiled: the jitted ``(state, x, group_ids) -> dict``;
            ``compiled._cache_size()`` counts compilations.
    """

    group_names: tuple[str, ...]
    counts: np.ndarray
    x: Any
    group_ids: jax.Array
    compiled: Callable[..., dict[str, jax.Array]]

    def __call__(self, state: Any) -> dict[str, jax.Array]:
        """NAPs ``{layer: (G, N)}`` (on device) of the fixed inputs under ``state``."""
        return self.compiled(_as_state(state), self.x, self.group_ids)

    def frame(self, state: Any, label: str, **metrics: float) -> Frame:
        """One `Frame`: the NAPs under ``state`` plus the metrics given.

        Call it between steps of your own training loop (your jitted step is
        unchanged): ``frames.append(recorder.frame(model, f"epoch {e}",
        loss=loss, accuracy=acc))``; `training_run` stacks the frames.

        Args:
            state: an NNX module or state, or Linen variables (as ``__call__``).
            label: the frame's label, e.g. ``"epoch 3"``.
            **metrics: scalar numbers recorded with the frame (``loss=...``).

        Raises:
            TypeError: ``label`` is not a str or a metric is not a real number.
        """
        if not isinstance(label, str):
            raise TypeError(f"label must be a str; got {type(label).__name__}")
        values = {}
        for name, value in metrics.items():
            array = np.asarray(value)
            if array.shape != () or not np.issubdtype(array.dtype, np.number):
                raise TypeError(
                    f"metric {name!r} must be one real number; got {value!r}"
                )
            values[name] = float(array)
        return Frame(label, self(state), values, self.group_names, self.counts)


@dataclasses.dataclass(frozen=True)
class Frame:
    """The NAPs of one point of training (from `NapRecorder.frame`).

    Attributes:
        label: e.g. ``"epoch 3"``.
        naps: ``{layer: (G, N)}`` NAPs.
        metrics: ``{name: value}`` recorded with the frame (e.g. loss).
        group_names: ``(G,)`` group names of the recorder.
        counts: ``(G,)`` inputs per group of the recorder.
    """

    label: str
    naps: dict[str, Any]
    metrics: dict[str, float]
    group_names: tuple[str, ...]
    counts: np.ndarray


@dataclasses.dataclass(frozen=True)
class TrainingRun:
    """Frames of one training run, stacked (host NumPy), for `topojax.analyze`.

    Attributes:
        labels: ``(T,)`` frame labels in training order.
        group_names: ``(G,)`` group names.
        counts: ``(G,)`` inputs per group.
        naps: ``{layer: (T, G, N)}`` NAPs per frame.
        metrics: ``{name: (T,)}`` per-frame metrics; NaN where a frame did not
            record that metric.
    """

    labels: tuple[str, ...]
    group_names: tuple[str, ...]
    counts: np.ndarray
    naps: dict[str, np.ndarray]
    metrics: dict[str, np.ndarray]


def training_run(frames: Sequence[Frame]) -> TrainingRun:
    """Stack `Frame` s (one recorder, in training order) into a `TrainingRun`.

    Raises:
        ValueError: no frames, or frames of different layers or groups.
    """
    frames = list(frames)
    if not frames:
        raise ValueError("frames is empty; expected at least one Frame")
    first = frames[0]
    for i, frame in enumerate(frames):
        if not isinstance(frame, Frame):
            raise TypeError(f"frames[{i}] is a {type(frame).__name__}, not a Frame")
        if frame.group_names != first.group_names or list(frame.naps) != list(
            first.naps
        ):
            raise ValueError(
                f"frame {i} ({frame.label!r}) has layers {list(frame.naps)} and "
                f"groups {frame.group_names}; expected those of frame 0 "
                f"({list(first.naps)}, {first.group_names})"
            )
    stacked = stack_snapshots([frame.naps for frame in frames])
    names = sorted({name for frame in frames for name in frame.metrics})
    return TrainingRun(
        labels=tuple(frame.label for frame in frames),
        group_names=first.group_names,
        counts=np.asarray(first.counts),
        naps={layer: np.asarray(values) for layer, values in stacked.items()},
        metrics={
            name: np.array([frame.metrics.get(name, np.nan) for frame in frames])
            for name in names
        },
    )


def make_recorder(
    model: Any,
    x: Any,
    labels: Any,
    *,
    layers: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    variables: Any = None,
    batch_size: int | None = None,
    spatial: Spatial = "mean",
    **apply_kwargs: Any,
) -> NapRecorder:
    """A `NapRecorder` of per-class NAPs of fixed inputs, for a training loop.

    Example (NNX; your loop and its jitted step stay as they are)::

        recorder = topojax.training.make_recorder(model, x_val, y_val)
        frames = [recorder.frame(model, "epoch 0")]
        for epoch in range(1, n_epochs + 1):
            ...  # your optax updates
            frames.append(recorder.frame(model, f"epoch {epoch}", loss=loss))
        run = topojax.training.training_run(frames)
        analysis = topojax.analyze(model, x_val, y_val, key=key, training=run)

    Args:
        model: an NNX module, or a Linen module (pass ``variables``).
        x: ``(n, ...)`` fixed inputs.
        labels: ``(n,)`` int class labels.
        layers: layer names; default `topojax.capture.post_activation_layers`
            (what `topojax.analyze` picks by default).
        class_names: names of the classes; default ``"0"``, ``"1"``, ...
        variables: Linen: the model's variables (their structure; each frame
            passes the current ones).
        batch_size: see `make_nap_recorder`.
        spatial: reduction of conv/token axes (see `topojax.profiles.naps`).
        **apply_kwargs: static keyword arguments of the forward pass.

    Returns:
        A `NapRecorder`; ``recorder.frame(model_or_state, label, **metrics)``.

    Raises:
        ValueError: bad labels or layers (before anything is compiled).
    """
    group_ids, group_names = by_label(labels, class_names)
    if layers is None:
        example = jax.tree.map(lambda leaf: leaf[:1], x)
        layers = post_activation_layers(
            model, example, variables=variables, **apply_kwargs
        )
    capture_fn, _ = make_state_capture(
        model, layers, variables=variables, **apply_kwargs
    )
    return make_nap_recorder(
        capture_fn,
        x,
        group_ids,
        group_names,
        spatial=spatial,
        batch_size=batch_size,
    )


def checkpoint_frames(
    recorder: NapRecorder,
    directory: str | Path,
    target: Any,
    *,
    metrics: Mapping[str, Sequence[float]] | None = None,
) -> list[Frame]:
    """One `Frame` per step of an Orbax checkpoint directory.

    Args:
        recorder: e.g. from `make_recorder`.
        directory: an Orbax ``CheckpointManager`` directory.
        target: a state of the checkpoints' structure (e.g. ``nnx.state(model)``
            or Linen ``variables``).
        metrics: optional ``{name: values}`` with one value per saved step, in
            step order (e.g. the losses you logged).

    Returns:
        Frames labelled ``"step <n>"``, in step order.

    Raises:
        FileNotFoundError: no checkpoint steps in ``directory``.
        ValueError: a metric without one value per step.
    """
    steps, states = load_orbax_checkpoints(directory, target)
    metrics = dict(metrics or {})
    for name, values in metrics.items():
        if len(values) != len(steps):
            raise ValueError(
                f"metric {name!r} has {len(values)} values; expected {len(steps)}, "
                f"one per checkpoint step {steps}"
            )
    return [
        recorder.frame(
            state, f"step {step}", **{name: v[i] for name, v in metrics.items()}
        )
        for i, (step, state) in enumerate(zip(steps, states, strict=True))
    ]


def make_nap_recorder(
    capture_fn: StateCaptureFn,
    x: Any,
    group_ids: Any,
    group_names: Sequence[str] | int,
    *,
    normalize: bool = True,
    spatial: Spatial = "mean",
    batch_size: int | None = None,
) -> NapRecorder:
    """A cheap jitted callback that records NAPs during a user's training loop.

    Example (NNX, inside your loop)::

        capture_fn, _ = topojax.capture.make_state_capture(model, ["hidden1"])
        recorder = make_nap_recorder(capture_fn, x_fixed, labels, class_names)
        snapshots = []
        for step in range(n_steps):
            ...  # your optax update
            if step % k == 0:
                snapshots.append(recorder(nnx.state(model)))
        series = stack_snapshots(snapshots)  # {layer: (T, G, N)}

    Args:
        capture_fn: ``fn(state, x) -> {layer: activations (batch, ..., N)}``,
            e.g. from `topojax.capture.make_state_capture` (NNX or Linen).
        x: ``(n, ...)`` fixed inputs (the same for every snapshot).
        group_ids: ``(n,)`` ints in ``[0, G)`` (from `topojax.groups`).
        group_names: ``(G,)`` names, or ``G`` (names become ``"0"``...).
        normalize: paper NAPs (group mean minus the mean over non-empty groups);
            ``False`` records plain group means.
        spatial: ``"mean"`` averages a conv layer's positions (``(G, N)``).
        batch_size: run the inputs through the model in batches of this size
            (a ``lax.scan``; bounds memory). Default: all at once.

    Returns:
        `NapRecorder`; ``recorder(state)`` returns ``{layer: (G, N)}`` on device.
        Calls with states of the same structure reuse one compilation.

    Raises:
        ValueError: ids not 1-D ints in range or not one per input, bad
            ``batch_size`` (before anything is compiled).
    """
    if isinstance(group_names, int | np.integer):
        group_names = tuple(str(i) for i in range(int(group_names)))
    group_names = tuple(str(n) for n in group_names)
    n_groups = len(group_names)
    if n_groups < 1:
        raise ValueError("group_names must name at least one group")
    ids = np.asarray(group_ids)
    leaves = jax.tree.leaves(x)
    n = ids.shape[0] if ids.ndim == 1 else -1
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"group_ids must be 1-D integers; got shape {ids.shape} dtype {ids.dtype}"
        )
    if not leaves or any(np.shape(leaf)[:1] != (n,) for leaf in leaves):
        raise ValueError(
            f"x must have a leading axis of {n} inputs (one per group id); got "
            f"leaf shapes {[np.shape(leaf) for leaf in leaves]}"
        )
    if n == 0 or ids.min() < 0 or ids.max() >= n_groups:
        raise ValueError(
            f"group_ids must be in [0, {n_groups}) and non-empty; got "
            f"{'none' if n == 0 else (int(ids.min()), int(ids.max()))}"
        )
    batch = n if batch_size is None else int(batch_size)
    if batch < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    batch = min(batch, n)
    n_batches = -(-n // batch)
    pad = n_batches * batch - n

    def reshape(leaf):
        leaf = jnp.asarray(leaf)
        if pad:
            leaf = jnp.concatenate([leaf, jnp.repeat(leaf[-1:], pad, axis=0)])
        return leaf.reshape(n_batches, batch, *leaf.shape[1:])

    padded_ids = np.concatenate([ids, np.full(pad, n_groups)]).astype(np.int32)
    compiled = jax.jit(
        functools.partial(_snapshot, capture_fn, group_names, bool(normalize), spatial)
    )
    return NapRecorder(
        group_names=group_names,
        counts=np.bincount(ids, minlength=n_groups).astype(np.int64),
        x=jax.tree.map(reshape, x),
        group_ids=jnp.asarray(padded_ids.reshape(n_batches, batch)),
        compiled=compiled,
    )


def stack_snapshots(
    snapshots: Sequence[Mapping[str, jax.Array]],
) -> dict[str, jax.Array]:
    """Stack recorder outputs ``[{layer: (G, N)}] * T`` into ``{layer: (T, G, N)}``.

    Raises:
        ValueError: no snapshots, or snapshots with different layers.
    """
    if not snapshots:
        raise ValueError("snapshots is empty; expected at least one")
    layers = list(snapshots[0])
    for i, snap in enumerate(snapshots):
        if list(snap) != layers:
            raise ValueError(
                f"snapshot {i} has layers {list(snap)}; expected {layers} like "
                "snapshot 0"
            )
    return {layer: jnp.stack([snap[layer] for snap in snapshots]) for layer in layers}


def _as_state(checkpoint: Any) -> Any:
    """NNX module -> its state; ``(graphdef, state)`` -> state; else unchanged."""
    from flax import nnx

    if isinstance(checkpoint, nnx.Module):
        return nnx.state(checkpoint)
    if (
        isinstance(checkpoint, tuple)
        and len(checkpoint) == 2
        and isinstance(checkpoint[0], nnx.GraphDef)
    ):
        return checkpoint[1]
    return checkpoint


def profile_checkpoints(
    capture_fn: StateCaptureFn,
    checkpoints: Sequence[Any],
    x: Any,
    group_ids: Any,
    group_names: Sequence[str] | int,
    *,
    normalize: bool = True,
    batch_size: int | None = None,
) -> dict[str, jax.Array]:
    """NAPs of every checkpoint on the same inputs, one compiled capture for all.

    Args:
        capture_fn: ``fn(state, x) -> {layer: activations}`` (see
            `make_nap_recorder`).
        checkpoints: ``T`` NNX states / ``(graphdef, state)`` pairs / NNX modules /
            Linen variables of one architecture, in training order.
        x: ``(n, ...)`` inputs.
        group_ids: ``(n,)`` group ids.
        group_names: ``(G,)`` names or ``G``.
        normalize: paper NAPs (default) or plain group means.
        batch_size: see `make_nap_recorder`.

    Returns:
        ``{layer: (T, G, N)}``.
    """
    if not checkpoints:
        raise ValueError("checkpoints is empty; expected at least one")
    recorder = make_nap_recorder(
        capture_fn,
        x,
        group_ids,
        group_names,
        normalize=normalize,
        batch_size=batch_size,
    )
    return stack_snapshots([recorder(checkpoint) for checkpoint in checkpoints])


def load_orbax_checkpoints(
    directory: str | Path, target: Any
) -> tuple[list[int], list[Any]]:
    """Read every step of an Orbax ``CheckpointManager`` directory.

    Needs the optional ``orbax-checkpoint`` package (``pip install
    orbax-checkpoint``); it is not a dependency of topojax.

    Args:
        directory: the manager's directory (one sub-directory per step).
        target: a state with the checkpoints' structure (e.g.
            ``nnx.state(model)``), used as the abstract restore target.

    Returns:
        ``(steps, states)`` in increasing step order.

    Raises:
        ImportError: ``orbax-checkpoint`` is not installed.
        FileNotFoundError: the directory does not exist or holds no steps.
    """
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:
        raise ImportError(
            "reading Orbax checkpoints needs the optional package orbax-checkpoint "
            "(pip install orbax-checkpoint); or pass the states themselves to "
            "profile_checkpoints"
        ) from error
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise FileNotFoundError(f"no checkpoint directory at {directory}")
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), target
    )
    with ocp.CheckpointManager(directory) as manager:
        steps = sorted(manager.all_steps())
        if not steps:
            raise FileNotFoundError(f"no checkpoint steps in {directory}")
        states = [
            manager.restore(step, args=ocp.args.StandardRestore(abstract))
            for step in steps
        ]
    return steps, states


# --------------------------------------------------------------------------- #
# One layout per layer, frames, animation, gallery series
# --------------------------------------------------------------------------- #


@dataclasses.dataclass(frozen=True)
class TrainingMaps:
    """One layer's NAPs across training on one fixed layout (host data).

    Attributes:
        layer: layer name.
        labels: ``(T,)`` frame labels, e.g. ``("step 0", "step 50")``.
        group_names: ``(G,)``.
        naps: ``(T, G, N)`` float32 NAPs per checkpoint.
        layout: the `Layout` shared by every frame, ``coords`` ``(N, 2)``.
        layout_on: ``"final"`` or ``"joint"``: which NAPs the layout was made of.
    """

    layer: str
    labels: tuple[str, ...]
    group_names: tuple[str, ...]
    naps: np.ndarray
    layout: Layout
    layout_on: str

    @property
    def clim(self) -> float:
        """The shared colour limit: ``max |NAP|`` over all frames and groups."""
        limit = float(np.max(np.abs(self.naps), initial=0.0))
        return limit if limit > 0 else 1.0


def _final_features(series: np.ndarray, present: np.ndarray) -> np.ndarray:
    return series[-1][present].T


def _joint_features(series: np.ndarray, present: np.ndarray) -> np.ndarray:
    values = series[:, present]  # (T, G', N)
    return np.transpose(values, (2, 0, 1)).reshape(values.shape[2], -1)


LAYOUT_FEATURES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "final": _final_features,
    "joint": _joint_features,
}


def training_maps(
    series: Mapping[str, Any],
    *,
    key: jax.Array,
    group_names: Sequence[str],
    labels: Sequence[str] | None = None,
    counts: Any = None,
    method: str | Callable[..., Layout] = "pca",
    layout_on: LayoutOn = "final",
    **layout_options: Any,
) -> dict[str, TrainingMaps]:
    """Lay out each layer once and keep its NAPs of every checkpoint.

    Args:
        series: ``{layer: (T, G, N)}`` from `profile_checkpoints` or
            `stack_snapshots`.
        key: PRNG key for the layout methods (split per layer).
        group_names: ``(G,)``.
        labels: ``(T,)`` frame labels (default ``"checkpoint 0"``, ...).
        counts: optional ``(G,)`` group sizes; empty groups are left out of the
            layout features.
        method: a layout method name (`topojax.layout.METHODS`, ``"a+b"``
            chains) or function.
        layout_on: ``"final"`` or ``"joint"`` (module docstring).
        **layout_options: passed to the layout method (e.g. ``metric``).

    Returns:
        ``{layer: TrainingMaps}``.

    Raises:
        ValueError: unknown ``layout_on``, inconsistent shapes or labels.
    """
    from topojax.layout import layout as run_layout

    if layout_on not in LAYOUT_FEATURES:
        raise ValueError(
            f"unknown layout_on {layout_on!r}; expected one of "
            f"{sorted(LAYOUT_FEATURES)}"
        )
    group_names = tuple(group_names)
    arrays = {name: np.asarray(values, np.float32) for name, values in series.items()}
    if not arrays:
        raise ValueError("series is empty; expected {layer: (T, G, N)}")
    n_frames = {values.shape[0] for values in arrays.values()}
    for name, values in arrays.items():
        if values.ndim != 3 or values.shape[1] != len(group_names):
            raise ValueError(
                f"layer {name!r}: NAPs have shape {values.shape}; expected "
                f"(T, {len(group_names)}, N)"
            )
    if len(n_frames) != 1:
        raise ValueError(f"layers have different numbers of frames: {n_frames}")
    (n_frames,) = n_frames
    labels = (
        tuple(f"checkpoint {t}" for t in range(n_frames))
        if labels is None
        else tuple(str(label) for label in labels)
    )
    if len(labels) != n_frames:
        raise ValueError(f"got {len(labels)} labels for {n_frames} frames")
    present = (
        np.ones(len(group_names), bool)
        if counts is None
        else np.asarray(counts).reshape(-1) > 0
    )
    make_features = LAYOUT_FEATURES[layout_on]
    out = {}
    for (name, values), layer_key in zip(
        arrays.items(), jax.random.split(key, len(arrays)), strict=True
    ):
        features = make_features(values, present)
        layout = run_layout(features, method, key=layer_key, **layout_options)
        out[name] = TrainingMaps(
            layer=name,
            labels=labels,
            group_names=group_names,
            naps=values,
            layout=layout,
            layout_on=layout_on,
        )
    return out


def render_frames(
    maps: TrainingMaps,
    *,
    resolution: int = 64,
    render_method: str = "linear",
    shape: str = "square",
    cmap: str = "bwr",
    columns: int | None = None,
    gap: int = 2,
    caption: bool = True,
) -> np.ndarray:
    """Draw every checkpoint as one image: the groups' maps in a grid.

    All frames use the layer's fixed layout (one render plan) and one colour
    limit, ``maps.clim``.

    Args:
        maps: a `TrainingMaps`.
        resolution: side of each map in pixels.
        render_method: `topojax.render` method.
        shape: ``"square"`` or ``"disk"``.
        cmap: colour map.
        columns: maps per row (default all groups in one row).
        gap: white pixels between maps.
        caption: write the frame label and group names into a top strip (this
            also keeps identical consecutive frames apart in GIF/APNG writers,
            which merge duplicates).

    Returns:
        ``(T, H, W, 4)`` uint8 RGBA frames.
    """
    from topojax.colors import colorize
    from topojax.render import apply_plan, render_plan

    plan = render_plan(
        maps.layout.coords, resolution=resolution, method=render_method, shape=shape
    )
    images = np.asarray(
        colorize(apply_plan(plan, maps.naps), cmap=cmap, clim=maps.clim)
    )  # (T, G, R, R, 4)
    n_frames, n_groups = images.shape[:2]
    columns = n_groups if columns is None else max(1, min(columns, n_groups))
    rows = -(-n_groups // columns)
    top = 14 if caption else 0
    label_height = 10 if caption else 0
    cell = resolution + gap
    height = top + rows * (cell + label_height) + gap
    width = columns * cell + gap
    frames = np.full((n_frames, height, width, 4), 255, np.uint8)
    for g in range(n_groups):
        row, col = divmod(g, columns)
        y = top + row * (cell + label_height) + label_height + gap
        x = col * cell + gap
        tile = images[:, g]
        # Transparent (NaN) pixels become white: GIF has no partial alpha.
        alpha = tile[..., 3:4].astype(np.float32) / 255.0
        rgb = tile[..., :3] * alpha + 255.0 * (1.0 - alpha)
        frames[:, y : y + resolution, x : x + resolution, :3] = rgb.astype(np.uint8)
    if caption:
        frames = _draw_captions(
            frames, maps, columns, resolution, gap, top, label_height
        )
    return frames


def _draw_captions(frames, maps, columns, resolution, gap, top, label_height):
    from PIL import Image, ImageDraw

    out = []
    cell = resolution + gap
    for t, frame in enumerate(frames):
        image = Image.fromarray(frame, "RGBA")
        draw = ImageDraw.Draw(image)
        draw.text((gap, 1), f"{maps.layer}: {maps.labels[t]}", fill=(0, 0, 0, 255))
        for g, name in enumerate(maps.group_names):
            row, col = divmod(g, columns)
            y = top + row * (cell + label_height)
            draw.text((col * cell + gap, y), name, fill=(0, 0, 0, 255))
        out.append(np.asarray(image))
    return np.stack(out)


_ANIMATION_FORMATS = {".gif": "GIF", ".png": "PNG", ".apng": "PNG"}


def write_animation(
    frames: np.ndarray, path: str | Path, *, duration_ms: int = 500, loop: int = 0
) -> Path:
    """Write frames as an animated GIF (``.gif``) or APNG (``.png``/``.apng``).

    Args:
        frames: ``(T, H, W, 4)`` or ``(T, H, W, 3)`` uint8.
        path: output file; the suffix picks the format.
        duration_ms: display time of each frame.
        loop: 0 loops forever.

    Returns:
        The path written.

    Raises:
        ValueError: unknown suffix or bad frames.
    """
    from PIL import Image

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _ANIMATION_FORMATS:
        raise ValueError(
            f"unknown animation suffix {path.suffix!r}; expected one of "
            f"{sorted(_ANIMATION_FORMATS)}"
        )
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be (T, H, W, 3 or 4) uint8; got {frames.shape} {frames.dtype}"
        )
    mode = "RGB" if suffix == ".gif" else ("RGBA" if frames.shape[-1] == 4 else "RGB")
    images = [Image.fromarray(frame).convert(mode) for frame in frames]
    images[0].save(
        path,
        format=_ANIMATION_FORMATS[suffix],
        save_all=True,
        append_images=images[1:],
        duration=duration_ms,
        loop=loop,
    )
    return path


def training_series(
    maps: TrainingMaps, method: str, description: str = ""
) -> TrainingSeries:
    """The gallery's `TrainingSeries` of a layer (epoch-slider page).

    Args:
        maps: a `TrainingMaps`.
        method: the key under which ``maps.layout.coords`` is stored in the
            layer's ``LayerView.layouts``.
        description: text shown on the page.
    """
    return TrainingSeries(
        labels=maps.labels,
        group_names=maps.group_names,
        values=maps.naps,
        method=method,
        description=description
        or (
            f"NAPs at {len(maps.labels)} checkpoints on one layout made from the "
            f"{'final checkpoint' if maps.layout_on == 'final' else 'all checkpoints'}"
            f"; one colour scale (±{maps.clim:.3g}) for all frames."
        ),
    )


__all__ = [
    "LAYOUT_FEATURES",
    "Frame",
    "LayoutOn",
    "NapRecorder",
    "TrainingMaps",
    "TrainingRun",
    "checkpoint_frames",
    "load_orbax_checkpoints",
    "make_nap_recorder",
    "make_recorder",
    "profile_checkpoints",
    "render_frames",
    "stack_snapshots",
    "training_maps",
    "training_run",
    "training_series",
    "write_animation",
]
