"""From a Flax model and labelled data to the gallery's `Analysis`: `analyze`.

One public function runs the whole pipeline on a user's own model::

    analysis = topojax.analyze(model, x, y, key=jax.random.key(0))
    topojax.gallery.build_gallery([analysis], "gallery")

It reads the data **twice**, streaming in batches (host memory does not grow
with the number of inputs):

1. **Predict and rank.** Every input runs through the model once: the model's
   predictions (argmax of its output) give the "errors" and "confusion"
   groupings, and a running top-k per neuron keeps each neuron's
   top-activating inputs.
2. **Profile the sample.** The groupings are sampled as in the paper: up to
   ``n_per_group`` random inputs of every group (all of a smaller group;
   default 200), drawn with the explicit ``key``. Only the sampled inputs (and
   the few kept for display) run through the model again, and one pass
   accumulates every grouping's per-group sums (`topojax.profiles.profile_sets`).

Then each layer is laid out by every chosen method (from the NAPs of the first
grouping, e.g. the classes) with its quality metrics, and every grouping becomes
a `GroupSet` with its NAPs, its group sizes and, when the inputs are images, one
exemplar input and the mean input of each group (drawn above the maps).

Groupings are values (`GroupSpec`): `CLASSES`, `ERRORS`, `CONFUSION`, and
`attribute_groups` for any per-input attribute; `GROUP_SPECS` maps their names
for the command line.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from topojax.capture import make_capture_with_output, post_activation_layers
from topojax.gallery.model import Analysis, GroupSet, LayerView, TrainingSeries
from topojax.groups import (
    Grouping,
    by_attribute,
    by_label,
    class_names_for,
    confusion_cells,
)
from topojax.groups import error_contrast as _error_contrast
from topojax.layout import LayoutFn, get_method
from topojax.metrics import layout_report
from topojax.profiles import (
    Spatial,
    balanced_sample,
    layout_features,
    naps,
    profile_sets,
    reduce_units,
)
from topojax.training import TrainingRun

__all__ = [
    "CLASSES",
    "CONFUSION",
    "ERRORS",
    "GROUP_SPECS",
    "GroupSpec",
    "analyze",
    "attribute_groups",
]

GroupingFn = Callable[[np.ndarray, np.ndarray, tuple[str, ...]], Grouping]
ImageFn = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """One grouping of the inputs that `analyze` profiles and shows.

    Attributes:
        name: the group set's name, e.g. ``"classes"`` (a section of the page).
        grouping: ``fn(labels, predictions, class_names) -> (group_ids,
            group_names)`` over all ``n`` inputs (``(n,)`` arrays; ids ``-1``
            leave an input out), e.g. a function of `topojax.groups`.
        description: shown above the maps.
        uses_predictions: the grouping reads the model's predictions (the model
            output must then be class scores ``(batch, n_classes)``).
        dendrogram_order: panels in dendrogram order of their NAPs (the
            paper's default); ``False`` keeps the grouping's own order (e.g.
            ``"3/correct"`` beside ``"3/wrong"``).
    """

    name: str
    grouping: GroupingFn
    description: str = ""
    uses_predictions: bool = False
    dendrogram_order: bool = True


def _classes(labels, predictions, class_names) -> Grouping:
    return by_label(labels, class_names)


def _errors(labels, predictions, class_names) -> Grouping:
    return _error_contrast(labels, predictions, class_names)


def _confusion(labels, predictions, class_names) -> Grouping:
    return confusion_cells(labels, predictions, class_names)


CLASSES = GroupSpec(
    "classes",
    _classes,
    "Per-class NAPs: each class's mean activation minus the mean over classes.",
)
ERRORS = GroupSpec(
    "errors",
    _errors,
    "Per class, the inputs the model classified correctly and wrongly (its own "
    "predictions; n = inputs profiled).",
    uses_predictions=True,
    dendrogram_order=False,
)
CONFUSION = GroupSpec(
    "confusion",
    _confusion,
    "One group per (true → predicted) pair that occurs.",
    uses_predictions=True,
    dendrogram_order=False,
)
GROUP_SPECS: dict[str, GroupSpec] = {
    spec.name: spec for spec in (CLASSES, ERRORS, CONFUSION)
}


def attribute_groups(
    name: str, values: Any, names: Mapping | Sequence[str] | None = None
) -> GroupSpec:
    """A `GroupSpec` with one group per distinct value of a per-input attribute.

    Args:
        name: the group set's name, e.g. ``"age group"``.
        values: ``(n,)`` attribute of every input, in data order.
        names: optional value -> group name (see `topojax.groups.by_attribute`).

    Returns:
        A `GroupSpec` whose grouping checks that ``values`` has one entry per
        input.
    """
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"attribute {name!r} must be 1-D (one value per input); got shape "
            f"{array.shape}"
        )

    def grouping(labels, predictions, class_names) -> Grouping:
        if array.shape[0] != labels.shape[0]:
            raise ValueError(
                f"attribute {name!r} has {array.shape[0]} values; expected "
                f"{labels.shape[0]}, one per input"
            )
        return by_attribute(array, names)

    return GroupSpec(name, grouping, f"One group per value of {name!r}.")


# --------------------------------------------------------------------------- #
# Data: arrays or a re-iterable of (x, y) batches, re-chunked to one size
# --------------------------------------------------------------------------- #


def _labels(values: Any, where: str) -> np.ndarray:
    labels = np.asarray(values)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{where}: labels must be a 1-D integer array (one class index per "
            f"input); got shape {labels.shape} dtype {labels.dtype}"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"{where}: labels must be >= 0; got {int(labels.min())}")
    return labels


def _source(
    data: Any, labels: Any, batch_size: int
) -> tuple[Callable[[], Iterator[tuple[Any, Any]]], int | None]:
    """``(fresh_batches, n)``: a function giving a new batch iterator each call."""
    if labels is not None:
        y = _labels(labels, "data")
        x = np.asarray(data) if not isinstance(data, jax.Array) else data
        if x.ndim < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"inputs have {x.shape[0] if x.ndim else 0} rows but labels has "
                f"{y.shape[0]}; expected one label per input"
            )

        def arrays() -> Iterator[tuple[Any, Any]]:
            for start in range(0, y.shape[0], batch_size):
                yield x[start : start + batch_size], y[start : start + batch_size]

        return arrays, int(y.shape[0])
    if callable(data) and not isinstance(data, Iterable):
        return lambda: iter(data()), None
    if not isinstance(data, Iterable):
        raise TypeError(
            "data must be an array of inputs (with labels), an iterable of "
            f"(x, y) batches or a function returning one; got {type(data).__name__}"
        )
    if iter(data) is data:
        raise ValueError(
            "data is a one-shot iterator, but analyze reads the data twice (to "
            "predict, then to profile the sampled inputs); pass a list, a "
            "re-iterable loader, or a function returning a fresh iterator"
        )
    return lambda: iter(data), None


@dataclasses.dataclass
class _Chunk:
    x: np.ndarray  # (batch_size, ...) padded by repeating the last row
    y: np.ndarray  # (n_valid,)
    start: int  # index of the first input
    n_valid: int


def _chunks(batches: Iterator[tuple[Any, Any]], batch_size: int) -> Iterator[_Chunk]:
    """Re-chunk ``(x, y)`` batches of any sizes into ``batch_size`` rows.

    Checks each batch (labels, one per input, same input shape and dtype as
    the first batch) before it is used.
    """
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    buffered = 0
    start = 0
    spec: tuple[tuple[int, ...], np.dtype] | None = None
    for index, batch in enumerate(batches):
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise ValueError(
                f"batch {index}: expected an (x, y) pair; got {type(batch).__name__}"
            )
        x, y = np.asarray(batch[0]), _labels(batch[1], f"batch {index}")
        if x.ndim < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"batch {index}: x has shape {x.shape} but y has {y.shape[0]} "
                "labels; expected one label per input"
            )
        if spec is None:
            spec = (x.shape[1:], x.dtype)
        elif (x.shape[1:], x.dtype) != spec:
            raise ValueError(
                f"batch {index}: inputs of shape {x.shape[1:]} dtype {x.dtype}; "
                f"expected {spec[0]} {spec[1]} like batch 0"
            )
        xs.append(x)
        ys.append(y)
        buffered += y.shape[0]
        while buffered >= batch_size:
            x_all, y_all = np.concatenate(xs), np.concatenate(ys)
            yield _Chunk(x_all[:batch_size], y_all[:batch_size], start, batch_size)
            start += batch_size
            xs, ys = [x_all[batch_size:]], [y_all[batch_size:]]
            buffered -= batch_size
    if buffered:
        x_all, y_all = np.concatenate(xs), np.concatenate(ys)
        padding = np.repeat(x_all[-1:], batch_size - buffered, axis=0)
        yield _Chunk(np.concatenate([x_all, padding]), y_all, start, buffered)
    elif spec is None:
        raise ValueError("data holds no inputs; expected at least one (x, y) batch")


# --------------------------------------------------------------------------- #
# Pass 1: predictions and each neuron's top-activating inputs
# --------------------------------------------------------------------------- #


@jax.jit
def _merge_top(
    top_values: jax.Array,
    top_index: jax.Array,
    values: jax.Array,
    index: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Keep the ``k`` largest of ``(N, k)`` and a batch's ``(B, N)`` values."""
    k = top_values.shape[1]
    merged = jnp.concatenate([top_values, values.T], axis=1)
    indices = jnp.concatenate(
        [top_index, jnp.broadcast_to(index, (values.shape[1], index.shape[0]))],
        axis=1,
    )
    best, position = jax.lax.top_k(merged, k)
    return best, jnp.take_along_axis(indices, position, axis=1)


def _reduce_batch(
    activations: dict[str, jax.Array], spatial: Spatial, n_valid: int
) -> dict[str, jax.Array]:
    """Per-input ``(B, N)`` values; padding rows get ``-inf`` (never on top)."""
    out = {}
    for layer, values in activations.items():
        reduced = reduce_units(values, spatial)
        row = jnp.arange(reduced.shape[0])[:, None]
        out[layer] = jnp.where(row < n_valid, reduced, -jnp.inf)
    return out


@dataclasses.dataclass
class _FirstPass:
    labels: np.ndarray  # (n,)
    predictions: np.ndarray  # (n,)
    top_values: dict[str, np.ndarray]  # layer -> (N, k)
    top_index: dict[str, np.ndarray]  # layer -> (N, k) input indices
    input_shape: tuple[int, ...]
    input_dtype: np.dtype
    low: float  # smallest and largest input value (image scaling)
    high: float


def _first_pass(
    chunks: Iterator[_Chunk],
    capture_fn: Callable[[Any], tuple[dict[str, jax.Array], jax.Array]],
    spatial: Spatial,
    top_k: int,
    needs_predictions: bool,
    progress: tqdm,
) -> _FirstPass:
    labels, predictions = [], []
    top_values: dict[str, jax.Array] = {}
    top_index: dict[str, jax.Array] = {}
    low, high = np.inf, -np.inf
    chunk = None
    for chunk in chunks:
        activations, output = capture_fn(jnp.asarray(chunk.x))
        reduced = _reduce_batch(activations, spatial, chunk.n_valid)
        index = jnp.arange(chunk.start, chunk.start + chunk.x.shape[0], dtype=jnp.int32)
        for layer, values in reduced.items():
            if layer not in top_values:
                k = min(top_k, values.shape[0])
                top_values[layer] = jnp.full((values.shape[1], k), -jnp.inf)
                top_index[layer] = jnp.full((values.shape[1], k), -1, jnp.int32)
            top_values[layer], top_index[layer] = _merge_top(
                top_values[layer], top_index[layer], values, index
            )
        predictions.append(
            _predicted_classes(output, chunk.n_valid) if needs_predictions else chunk.y
        )
        labels.append(chunk.y)
        valid = chunk.x[: chunk.n_valid]
        if np.issubdtype(valid.dtype, np.number):
            low, high = min(low, float(valid.min())), max(high, float(valid.max()))
        progress.update(chunk.n_valid)
    assert chunk is not None  # _chunks raises on empty data
    n = chunk.start + chunk.n_valid
    top_index_host = {}
    for layer, index in top_index.items():
        index = np.asarray(index)
        # Fewer inputs than k: the best input fills the empty slots.
        valid = np.isfinite(np.asarray(top_values[layer])) & (index < n)
        top_index_host[layer] = np.where(valid, index, index[:, :1])
    return _FirstPass(
        labels=np.concatenate(labels),
        predictions=np.concatenate(predictions),
        top_values={layer: np.asarray(v) for layer, v in top_values.items()},
        top_index=top_index_host,
        input_shape=chunk.x.shape[1:],
        input_dtype=chunk.x.dtype,
        low=low,
        high=high,
    )


def _predicted_classes(output: Any, n_valid: int) -> np.ndarray:
    logits = np.asarray(output)[:n_valid]
    if logits.ndim != 2:
        raise ValueError(
            f"the model output has shape {logits.shape}; analyze needs class "
            "scores (batch, n_classes) for groupings of its predictions (errors, "
            "confusion); pass groups without them, e.g. groups=[CLASSES]"
        )
    return logits.argmax(axis=1)


# --------------------------------------------------------------------------- #
# Groupings, sampling, and pass 2
# --------------------------------------------------------------------------- #


@dataclasses.dataclass
class _Grouped:
    spec: GroupSpec
    group_names: tuple[str, ...]
    ids: np.ndarray  # (n,) group id per input, n_groups: not sampled/left out
    exemplars: np.ndarray  # (G,) input index or -1


def _group(
    specs: Sequence[GroupSpec],
    first: _FirstPass,
    class_names: tuple[str, ...],
    n_per_group: int | None,
    key: jax.Array,
) -> list[_Grouped]:
    grouped = []
    for spec, spec_key in zip(specs, jax.random.split(key, len(specs)), strict=True):
        ids, names = spec.grouping(first.labels, first.predictions, class_names)
        ids = np.asarray(ids).astype(np.int64)
        n_groups = len(names)
        members = np.flatnonzero(ids >= 0)
        if n_per_group is None:
            order = jax.random.permutation(spec_key, members.shape[0])
            chosen = members[np.asarray(order)]
            chosen = chosen[np.argsort(ids[chosen], kind="stable")]
        else:
            chosen = members[balanced_sample(spec_key, ids[members], n_per_group)]
        sampled = np.full(ids.shape, n_groups, np.int64)
        sampled[chosen] = ids[chosen]
        # The first chosen member of a group (random order) is its exemplar.
        exemplars = np.full(n_groups, -1, np.int64)
        chosen_ids = ids[chosen]
        first_of_group = np.unique(chosen_ids, return_index=True)
        exemplars[first_of_group[0]] = chosen[first_of_group[1]]
        grouped.append(_Grouped(spec, tuple(names), sampled, exemplars))
    return grouped


def _second_pass_batches(
    chunks: Iterator[_Chunk],
    grouped: Sequence[_Grouped],
    needed: np.ndarray,
    keep: np.ndarray,
    images: ImageFn | None,
    batch_size: int,
    kept_rows: dict[int, np.ndarray],
    input_sums: dict[str, np.ndarray],
    progress: tqdm,
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Batches of the needed inputs only, ``({set: ids}, x)`` for profile_sets.

    Side effects: the images of rows in ``keep`` are stored (float32) in
    ``kept_rows``; each set's per-group input sums are added to ``input_sums``
    (for mean inputs).
    """
    xs: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    buffered = 0

    def flush(n: int):
        nonlocal xs, rows, buffered
        x_all, rows_all = np.concatenate(xs), np.concatenate(rows)
        ids = {g.spec.name: g.ids[rows_all[:n]].astype(np.int32) for g in grouped}
        xs, rows = [x_all[n:]], [rows_all[n:]]
        buffered -= n
        return ids, x_all[:n]

    for chunk in chunks:
        index = np.arange(chunk.start, chunk.start + chunk.n_valid)
        if index[-1] >= needed.shape[0]:
            raise ValueError(
                "data changed between the two passes: it yielded more inputs the "
                f"second time (more than {needed.shape[0]}); pass data that yields "
                "the same inputs in the same order each time"
            )
        mask = needed[index]
        progress.update(chunk.n_valid)
        if not mask.any():
            continue
        x = chunk.x[: chunk.n_valid][mask]
        shown = keep[index[mask]]
        if images is not None and shown.any():
            pictures = _images(images, x[shown]).astype(np.float32)
            for row, picture in zip(index[mask][shown], pictures, strict=True):
                kept_rows[int(row)] = picture
        for g in grouped:
            ids = g.ids[index[mask]]
            inside = ids < len(g.group_names)
            np.add.at(input_sums[g.spec.name], ids[inside], x[inside])
        xs.append(x)
        rows.append(index[mask])
        buffered += x.shape[0]
        while buffered >= batch_size:
            yield flush(batch_size)
    if buffered:
        yield flush(buffered)


# --------------------------------------------------------------------------- #
# Images shown in the gallery
# --------------------------------------------------------------------------- #


def _default_images(
    input_shape: tuple[int, ...], low: float, high: float
) -> ImageFn | None:
    """Greyscale ``(h, w)``/``(h, w, 1)`` or RGB ``(h, w, 3)`` inputs, scaled.

    Values are mapped to ``[0, 1]`` with the data's own range (unchanged when
    it already lies in ``[0, 1]``); other inputs (e.g. tokens) have no image.
    """
    image_like = len(input_shape) == 2 or (
        len(input_shape) == 3 and input_shape[2] in (1, 3)
    )
    if not image_like or not np.isfinite(low) or not np.isfinite(high):
        return None
    if low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    scale = high - low if high > low else 1.0

    def to_image(x: np.ndarray) -> np.ndarray:
        images = (np.asarray(x, np.float64) - low) / scale
        if images.ndim == 4 and images.shape[3] == 1:
            images = images[..., 0]
        return np.clip(images, 0.0, 1.0)

    return to_image


# --------------------------------------------------------------------------- #
# The public pipeline
# --------------------------------------------------------------------------- #


def _check_positive(value: Any, name: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")


def _resolve_methods(methods: Sequence[str] | Mapping[str, LayoutFn]):
    if isinstance(methods, str):
        methods = (methods,)
    if isinstance(methods, Mapping):
        resolved = dict(methods)
        bad = [name for name, fn in resolved.items() if not callable(fn)]
        if bad:
            raise TypeError(f"methods {bad} are not layout functions")
    else:
        resolved = {name: get_method(name) for name in methods}
    if not resolved:
        raise ValueError("methods must name at least one layout method")
    return resolved


def _check_specs(groups: Sequence[GroupSpec]) -> tuple[GroupSpec, ...]:
    specs = tuple(groups)
    if not specs:
        raise ValueError("groups must hold at least one GroupSpec (e.g. CLASSES)")
    for spec in specs:
        if not isinstance(spec, GroupSpec):
            raise TypeError(
                f"groups must hold GroupSpec values (CLASSES, ERRORS, CONFUSION, "
                f"attribute_groups(...)); got {spec!r}"
            )
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"group set names must be distinct; got {names}")
    return specs


def analyze(
    model: Any,
    data: Any,
    labels: Any = None,
    *,
    key: jax.Array,
    layers: Sequence[str] | None = None,
    variables: Any = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    groups: Sequence[GroupSpec] = (CLASSES, ERRORS),
    methods: Sequence[str] | Mapping[str, LayoutFn] = ("optimize",),
    n_per_group: int | None = 200,
    batch_size: int = 256,
    spatial: Spatial = "mean",
    top_k: int = 8,
    to_image: ImageFn | None = None,
    training: TrainingRun | None = None,
    model_name: str = "model",
    quiet: bool = False,
) -> Analysis:
    """Analyse a Flax model on labelled data: everything a gallery shows.

    Args:
        model: a ``flax.nnx.Module``, or a ``flax.linen.Module`` with
            ``variables``. Captured in inference mode (see `topojax.capture`).
        data: inputs ``(n, ...)`` (with ``labels``), or a re-iterable of
            ``(x, y)`` batches of NumPy/JAX arrays (a list, a data loader that
            can be iterated twice), or a function returning a fresh iterator of
            them. Batches may have any sizes; they are re-chunked to
            ``batch_size``.
        labels: ``(n,)`` int class labels when ``data`` is an array.
        key: PRNG key (``jax.random.key``): sampling, exemplars and layouts.
        layers: layer names (see `topojax.capture.list_layers`); default:
            every hidden post-activation layer
            (`topojax.capture.post_activation_layers`).
        variables: Linen: the model's variables (required).
        apply_kwargs: keyword arguments of the forward pass, e.g.
            ``{"train": False}`` for a Linen model with BatchNorm.
        class_names: names of the classes; default ``"0"``, ``"1"``, ...
        groups: the groupings to profile, each a `GroupSpec`; the first one's
            NAPs are the layout input. Default ``(CLASSES, ERRORS)``.
        methods: layout method names (`topojax.layout.METHODS`, chains like
            ``"umap+swarm"``) or a dict ``name -> layout function``; the first
            is the gallery's default view.
        n_per_group: inputs sampled per group (the paper: 200); ``None``
            profiles every input.
        batch_size: inputs per forward pass.
        spatial: how a layer with axes between batch and neurons becomes one
            value per neuron: ``"mean"`` (conv positions, transformer tokens),
            ``"flatten"`` (every position a neuron), or an int position (``0``:
            a CLS token, ``-1``: the last token).
        top_k: top-activating inputs kept per neuron (over all inputs).
        to_image: ``fn(x (b, ...)) -> (b, h, w)`` or ``(b, h, w, 3)`` images in
            ``[0, 1]`` for thumbnails and exemplars; default: image-shaped
            inputs scaled by their range, none for other inputs (e.g. tokens).
        training: optional `topojax.training.TrainingRun` (from a recorder in
            your training loop or from Orbax checkpoints) for the training
            page of every layer it recorded.
        model_name: shown in the gallery.
        quiet: no progress bars (they go to stderr).

    Returns:
        The gallery's `Analysis` (`topojax.gallery.build_gallery` writes it,
        `topojax.gallery.save_analysis` stores it).

    Raises:
        ValueError: bad options, labels (not 1-D ints, not one per input, a
            single class), batches that change shape or dtype, unknown layers
            (listing the valid ones), a one-shot iterator, a layout grouping
            with fewer than two non-empty groups. Options and layers are
            checked before any input is computed.
        TypeError: ``model`` is not a Flax module; bad ``groups``.
    """
    _check_positive(batch_size, "batch_size")
    _check_positive(top_k, "top_k")
    _check_positive(n_per_group, "n_per_group", allow_none=True)
    specs = _check_specs(groups)
    layout_fns = _resolve_methods(methods)
    apply_kwargs = dict(apply_kwargs or {})
    if training is not None and not isinstance(training, TrainingRun):
        raise TypeError(
            f"training must be a topojax.training.TrainingRun; got "
            f"{type(training).__name__}"
        )
    fresh_batches, n_inputs = _source(data, labels, batch_size)
    if labels is not None:
        _check_classes(np.asarray(labels), class_names)
    example = next(_chunks(fresh_batches(), 1)).x
    if layers is None:
        layers = post_activation_layers(
            model, example, variables=variables, **apply_kwargs
        )
        if not layers:
            raise ValueError("the model has no hidden post-activation layer to analyse")
    capture_fn = make_capture_with_output(
        model, layers, variables=variables, **apply_kwargs
    )
    # Traced, not run: unknown layers fail here, listing the valid ones.
    jax.eval_shape(capture_fn, jnp.asarray(example))
    layers = tuple(layers)
    if training is not None:
        _check_training(training, layers)

    bar = _progress_factory(quiet)
    with bar(total=n_inputs, desc=f"{model_name}: predict", unit="input") as progress:
        first = _first_pass(
            _chunks(fresh_batches(), batch_size),
            capture_fn,
            spatial,
            top_k,
            any(spec.uses_predictions for spec in specs),
            progress,
        )
    class_names = _check_classes(first.labels, class_names, first.predictions)
    sample_key, layout_key = jax.random.split(key)
    grouped = _group(specs, first, class_names, n_per_group, sample_key)
    _check_groupings(grouped)

    n = first.labels.shape[0]
    images = to_image or _default_images(first.input_shape, first.low, first.high)
    keep = np.zeros(n, bool)
    if images is not None:
        for index in first.top_index.values():
            keep[index[index >= 0]] = True
        for g in grouped:
            keep[g.exemplars[g.exemplars >= 0]] = True
    needed = keep.copy()
    for g in grouped:
        needed |= g.ids < len(g.group_names)
    kept_rows: dict[int, np.ndarray] = {}
    input_sums = {
        g.spec.name: np.zeros((len(g.group_names), *first.input_shape)) for g in grouped
    }
    with bar(total=n, desc=f"{model_name}: profile", unit="input") as progress:
        profiles = profile_sets(
            lambda x: capture_fn(x)[0],
            _second_pass_batches(
                _chunks(fresh_batches(), batch_size),
                grouped,
                needed,
                keep,
                images,
                batch_size,
                kept_rows,
                input_sums,
                progress,
            ),
            {g.spec.name: g.group_names for g in grouped},
        )
    missing = np.flatnonzero(keep)[
        [int(i) not in kept_rows for i in np.flatnonzero(keep)]
    ]
    if missing.size:
        raise ValueError(
            f"data changed between the two passes: input {int(missing[0])} was not "
            "seen again; pass data that yields the same inputs each time"
        )

    display = np.flatnonzero(keep)
    position = np.full(n, -1, np.int64)
    position[display] = np.arange(display.size)
    inputs = None
    if images is not None and display.size:
        inputs = np.stack([kept_rows.pop(int(i)) for i in display])

    layouts = _fit_layouts(
        {
            layer: np.asarray(
                layout_features(profiles[specs[0].name][layer], spatial=spatial)
            )
            for layer in layers
        },
        layout_fns,
        layout_key,
        bar(total=len(layers) * len(layout_fns), desc=f"{model_name}: layouts"),
    )
    views = []
    for layer in layers:
        coords = {m: layouts[layer, m][0] for m in layout_fns}
        group_sets = tuple(
            _group_set(
                g, profiles[g.spec.name][layer], spatial, images, input_sums, position
            )
            for g in grouped
        )
        top = None
        if images is not None:
            top = position[first.top_index[layer]]
            top = np.where(top < 0, position[first.top_index[layer][:, :1]], top)
        views.append(
            LayerView(
                name=layer,
                n_neurons=coords[next(iter(coords))].shape[0],
                layouts=coords,
                layout_metrics={m: layouts[layer, m][1] for m in layout_fns},
                group_sets=group_sets,
                training=_training_series(training, layer, next(iter(layout_fns))),
                top_inputs=top,
            )
        )
    return Analysis(
        model_name=model_name,
        layers=tuple(views),
        inputs=inputs,
        params={
            "methods": list(layout_fns),
            "groups": [spec.name for spec in specs],
            "n_inputs": int(n),
            "n_per_group": n_per_group,
            "spatial": spatial,
            "accuracy": float(np.mean(first.labels == first.predictions))
            if any(spec.uses_predictions for spec in specs)
            else None,
        },
    )


def _progress_factory(quiet: bool) -> Callable[..., tqdm]:
    def bar(**kwargs) -> tqdm:
        return tqdm(file=sys.stderr, disable=quiet, leave=False, **kwargs)

    return bar


def _check_classes(
    labels: np.ndarray,
    class_names: Sequence[str] | None,
    predictions: np.ndarray | None = None,
) -> tuple[str, ...]:
    labels = _labels(labels, "data")
    present = np.unique(labels)
    if present.size < 2:
        raise ValueError(
            f"the labels hold a single class ({present.tolist()}): class NAPs (each "
            "class's mean minus the mean over classes) would all be exactly zero; "
            "pass inputs of at least two classes"
        )
    seen = [labels] if predictions is None else [labels, predictions]
    return class_names_for(class_names, *seen)


def _check_groupings(grouped: Sequence[_Grouped]) -> None:
    for i, g in enumerate(grouped):
        non_empty = np.unique(g.ids[g.ids < len(g.group_names)]).size
        if non_empty >= 2:
            continue
        message = (
            f"grouping {g.spec.name!r} has {non_empty} non-empty group(s): its "
            "NAPs (group mean minus the mean over groups) are all exactly zero"
        )
        if i == 0:
            raise ValueError(message + "; it cannot be the layout input")
        warnings.warn(message + "; its maps will be blank", UserWarning, stacklevel=3)


def _check_training(training: TrainingRun, layers: tuple[str, ...]) -> None:
    unknown = [layer for layer in training.naps if layer not in layers]
    if unknown:
        raise ValueError(
            f"training recorded layers {unknown} that are not analysed; analysed "
            f"layers: {list(layers)}"
        )


def _fit_layouts(
    features: dict[str, np.ndarray],
    layout_fns: dict[str, LayoutFn],
    key: jax.Array,
    progress: tqdm,
) -> dict[tuple[str, str], tuple[np.ndarray, dict[str, float]]]:
    """Every (layer, method) layout and its metrics, in a thread pool.

    XLA compiles and runs outside the GIL, so layouts of different layers and
    methods keep every core busy.
    """

    def fit(layer_features, layout_fn, method_key):
        fit_key, report_key = jax.random.split(method_key)
        coords = np.asarray(layout_fn(layer_features, key=fit_key).coords)
        report = layout_report(layer_features, coords, key=report_key)
        progress.update()
        return coords, report

    futures = {}
    with (
        progress,
        concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool,
    ):
        layer_keys = jax.random.split(key, len(features))
        for (layer, layer_features), layer_key in zip(
            features.items(), layer_keys, strict=True
        ):
            method_keys = jax.random.split(layer_key, len(layout_fns))
            for (method, layout_fn), method_key in zip(
                layout_fns.items(), method_keys, strict=True
            ):
                futures[layer, method] = pool.submit(
                    fit, layer_features, layout_fn, method_key
                )
        return {name: future.result() for name, future in futures.items()}


def _group_set(
    g: _Grouped,
    layer_profile: Any,
    spatial: Spatial,
    images: ImageFn | None,
    input_sums: dict[str, np.ndarray],
    position: np.ndarray,
) -> GroupSet:
    counts = np.asarray(layer_profile.counts)
    mean_inputs = exemplars = None
    if images is not None:
        exemplars = np.where(g.exemplars >= 0, position[np.maximum(g.exemplars, 0)], -1)
        sums = input_sums[g.spec.name]
        means = sums / np.maximum(counts, 1).reshape((-1,) + (1,) * (sums.ndim - 1))
        mean_inputs = _images(images, means)
    return GroupSet(
        name=g.spec.name,
        group_names=g.group_names,
        counts=counts,
        values=np.asarray(naps(layer_profile, spatial=spatial)),
        description=g.spec.description,
        order=None if g.spec.dendrogram_order else tuple(range(len(g.group_names))),
        exemplars=exemplars,
        mean_inputs=mean_inputs,
    )


def _images(to_image: ImageFn, x: np.ndarray) -> np.ndarray:
    images = np.asarray(to_image(x), np.float64)
    if images.shape[:1] != x.shape[:1] or images.ndim not in (3, 4):
        raise ValueError(
            f"to_image returned shape {images.shape} for {x.shape[0]} inputs; "
            "expected (n, h, w) or (n, h, w, 3) with values in [0, 1]"
        )
    return images


def _training_series(
    training: TrainingRun | None, layer: str, method: str
) -> TrainingSeries | None:
    if training is None or layer not in training.naps:
        return None
    return TrainingSeries(
        labels=training.labels,
        group_names=training.group_names,
        values=training.naps[layer],
        method=method,
        description=f"NAPs of {len(training.labels)} frames of training on the "
        "final model's layout.",
        metrics=training.metrics,
        counts=training.counts,
    )
