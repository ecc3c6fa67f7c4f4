"""The gallery's data model: what was analysed, as host-side NumPy and plain data.

An `Analysis` is one model; it has `LayerView`s; a layer has one or more layouts
(one ``(n_neurons, 2)`` array per method name), their quality numbers, and one or
more `GroupSet`s: a grouping of the inputs (classes, correct/wrong per class,
attribute values, ...) with one value per group and neuron (the NAPs). A layer may
also carry a `TrainingSeries` (NAPs at several checkpoints, drawn on one fixed
layout), the indices of each neuron's top-activating inputs and any per-neuron
profile features.

The classes are frozen dataclasses that check their arguments on construction
and hold read-only copies of their arrays (so a gallery built from them cannot
change under it). They live at the edge of the pipeline (the gallery is written
by NumPy, Pillow and Jinja2 code), so they are not JAX pytrees; pass JAX arrays
in freely, they are converted with ``np.asarray``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Analysis", "GroupSet", "LayerView", "TrainingSeries"]

# Coordinates may exceed [0, 1] by float rounding after a rescale.
_COORD_TOLERANCE = 1e-5


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _frozen_array(value: Any, dtype: Any, what: str, ndim: int) -> np.ndarray:
    try:
        array = np.array(value, dtype=dtype, copy=True)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{what} must be a numeric array; got {type(value).__name__}"
        ) from error
    if array.ndim != ndim:
        raise ValueError(f"{what} must be {ndim}-D; got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite; it has NaN or inf entries")
    array.setflags(write=False)
    return array


def _int_array(value: Any, what: str, ndim: int) -> np.ndarray:
    raw = np.asarray(value)
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        raise TypeError(f"{what} must be integers; got dtype {raw.dtype}")
    return _frozen_array(raw, np.int64, what, ndim)


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(f"{what} must be a sequence of strings, not one string")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{what} must be strings; got {name!r}")
    return names


def _check_str(value: Any, what: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str; got {type(value).__name__}")


def _unique(names: Sequence[str], what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} must be distinct; {name!r} appears twice")
        seen.add(name)


def _check_images(images: np.ndarray, what: str, n_images: int | None) -> None:
    """``(n, h, w)`` or ``(n, h, w, 3)`` with values in ``[0, 1]``."""
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] != 3):
        raise ValueError(
            f"{what} has shape {images.shape}; expected (n, h, w) or (n, h, w, 3)"
        )
    if n_images is not None and images.shape[0] != n_images:
        raise ValueError(
            f"{what} has {images.shape[0]} images; expected {n_images}, one per group"
        )
    if images.size and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"{what} must have values in [0, 1]")


def plain_data(obj: Any, what: str = "params") -> Any:
    """``obj`` as JSON-compatible plain data.

    NumPy/JAX scalars and arrays become Python numbers and lists; tuples become
    lists; non-finite floats become None.

    Raises:
        TypeError: if something cannot be represented (e.g. a non-str dict key).
    """
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{what}: keys must be str; got {key!r}")
            out[key] = plain_data(value, f"{what}[{key!r}]")
        return out
    if isinstance(obj, list | tuple):
        return [plain_data(value, what) for value in obj]
    if hasattr(obj, "__array__"):
        return plain_data(np.asarray(obj).tolist(), what)
    if isinstance(obj, np.generic):
        return plain_data(obj.item(), what)
    raise TypeError(
        f"{what}: {type(obj).__name__} is not JSON data (use str, numbers, lists, "
        "dicts with str keys)"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class GroupSet:
    """One grouping of the inputs and its per-group, per-neuron values.

    Attributes:
        name: name of the grouping, e.g. ``"classes"`` or ``"errors"``; one
            section of the layer page each.
        group_names: ``(n_groups,)`` distinct names, e.g. ``("0", ..., "9")``.
        counts: ``(n_groups,)`` int number of inputs in each group (0 allowed:
            the gallery marks the group empty).
        values: ``(n_groups, n_neurons)`` float value drawn per neuron, usually
            the NAP (group mean minus mean over groups), finite.
        description: optional text shown above the maps.
        order: optional left-to-right panel order (a permutation of
            ``range(n_groups)``). Default: the dendrogram leaf order of the
            groups' values (`topojax.gallery.group_order`), as in the paper.
        exemplars: optional ``(n_groups,)`` int index into ``Analysis.inputs``
            of one representative input per group (drawn above its map, as in
            the paper); ``-1`` for a group without one (e.g. empty).
        mean_inputs: optional ``(n_groups, h, w)`` or ``(n_groups, h, w, 3)``
            mean input image of each group, values in ``[0, 1]`` (empty
            groups: any values; the gallery marks them empty).
    """

    name: str
    group_names: tuple[str, ...]
    counts: np.ndarray
    values: np.ndarray
    description: str = ""
    order: tuple[int, ...] | None = None
    exemplars: np.ndarray | None = None
    mean_inputs: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_str(self.name, "GroupSet.name")
        _check_str(self.description, f"GroupSet {self.name!r} description")
        names = _names(self.group_names, f"GroupSet {self.name!r} group_names")
        if not names:
            raise ValueError(f"GroupSet {self.name!r} has no groups")
        _unique(names, f"group names of GroupSet {self.name!r}")
        _set(self, "group_names", names)
        counts = _int_array(self.counts, f"GroupSet {self.name!r} counts", 1)
        values = _frozen_array(
            self.values, np.float64, f"GroupSet {self.name!r} values", 2
        )
        n_groups = len(names)
        if counts.shape != (n_groups,):
            raise ValueError(
                f"GroupSet {self.name!r}: counts has shape {counts.shape}; expected "
                f"({n_groups},), one per group name"
            )
        if np.any(counts < 0):
            raise ValueError(f"GroupSet {self.name!r}: counts must be >= 0")
        if values.shape[0] != n_groups or values.shape[1] < 1:
            raise ValueError(
                f"GroupSet {self.name!r}: values has shape {values.shape}; expected "
                f"({n_groups}, n_neurons)"
            )
        _set(self, "counts", counts)
        _set(self, "values", values)
        if self.order is not None:
            order = tuple(int(i) for i in self.order)
            if sorted(order) != list(range(n_groups)):
                raise ValueError(
                    f"GroupSet {self.name!r}: order {order} is not a permutation of "
                    f"range({n_groups})"
                )
            _set(self, "order", order)
        where = f"GroupSet {self.name!r}"
        if self.exemplars is not None:
            exemplars = _int_array(self.exemplars, f"{where} exemplars", 1)
            if exemplars.shape != (n_groups,) or (
                exemplars.size and exemplars.min() < -1
            ):
                raise ValueError(
                    f"{where}: exemplars must be ({n_groups},) input indices >= -1; "
                    f"got shape {exemplars.shape}"
                )
            _set(self, "exemplars", exemplars)
        if self.mean_inputs is not None:
            raw = np.asarray(self.mean_inputs)
            means = _frozen_array(raw, np.float32, f"{where} mean_inputs", raw.ndim)
            _check_images(means, f"{where} mean_inputs", n_groups)
            _set(self, "mean_inputs", means)

    @property
    def n_groups(self) -> int:
        """Number of groups."""
        return len(self.group_names)

    @property
    def n_neurons(self) -> int:
        """Number of neurons (columns of ``values``)."""
        return self.values.shape[1]


@dataclasses.dataclass(frozen=True, eq=False)
class TrainingSeries:
    """Values of the groups at several points of training, on one fixed layout.

    Attributes:
        labels: ``(n_frames,)`` frame labels, e.g. ``("step 0", "step 120")``.
        group_names: ``(n_groups,)`` distinct group names.
        values: ``(n_frames, n_groups, n_neurons)`` finite values per frame.
        method: the layout method (a key of the layer's ``layouts``) that every
            frame is drawn with, so frames are comparable.
        description: optional text shown on the training page.
        metrics: optional ``{name: (n_frames,) floats}`` recorded with each
            frame, e.g. ``{"loss": ..., "accuracy": ...}`` (NaN: not recorded
            at that frame).
        counts: optional ``(n_groups,)`` int number of inputs in each group.
    """

    labels: tuple[str, ...]
    group_names: tuple[str, ...]
    values: np.ndarray
    method: str
    description: str = ""
    metrics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_str(self.method, "TrainingSeries.method")
        _check_str(self.description, "TrainingSeries.description")
        labels = _names(self.labels, "TrainingSeries.labels")
        names = _names(self.group_names, "TrainingSeries.group_names")
        _unique(names, "TrainingSeries.group_names")
        values = _frozen_array(self.values, np.float64, "TrainingSeries.values", 3)
        expected = (len(labels), len(names))
        if not labels or not names or values.shape[:2] != expected:
            raise ValueError(
                f"TrainingSeries.values has shape {values.shape}; expected "
                f"({len(labels)}, {len(names)}, n_neurons) from {len(labels)} "
                f"labels and {len(names)} group names (at least one of each)"
            )
        _set(self, "labels", labels)
        _set(self, "group_names", names)
        _set(self, "values", values)
        if not isinstance(self.metrics, Mapping):
            raise TypeError("TrainingSeries.metrics must be a dict name -> values")
        metrics = {}
        for metric, series in self.metrics.items():
            _check_str(metric, "TrainingSeries metric name")
            array = np.array(series, dtype=np.float64, copy=True)
            if array.shape != (len(labels),) or np.any(np.isinf(array)):
                raise ValueError(
                    f"TrainingSeries metric {metric!r} must be ({len(labels)},) "
                    f"finite or NaN values, one per frame; got shape {array.shape}"
                )
            array.setflags(write=False)
            metrics[metric] = array
        _set(self, "metrics", metrics)
        if self.counts is not None:
            counts = _int_array(self.counts, "TrainingSeries.counts", 1)
            if counts.shape != (len(names),) or (counts.size and counts.min() < 0):
                raise ValueError(
                    f"TrainingSeries.counts must be ({len(names)},) ints >= 0; got "
                    f"shape {counts.shape}"
                )
            _set(self, "counts", counts)

    @property
    def n_frames(self) -> int:
        """Number of frames (checkpoints)."""
        return len(self.labels)


@dataclasses.dataclass(frozen=True, eq=False)
class LayerView:
    """Everything the gallery shows about one layer.

    Attributes:
        name: layer name, e.g. ``"hidden1"``.
        n_neurons: number of neurons (channels).
        layouts: method name -> ``(n_neurons, 2)`` coordinates in ``[0, 1]^2``.
            The first one is the default view.
        layout_metrics: method name -> metric name -> value (e.g. the output of
            `topojax.metrics.layout_report`); methods may be missing.
        group_sets: one or more `GroupSet`s with ``n_neurons`` columns each and
            distinct names.
        training: optional `TrainingSeries` drawn on ``layouts[training.method]``.
        top_inputs: optional ``(n_neurons, k)`` int indices into
            ``Analysis.inputs`` of each neuron's top-activating inputs, best first.
        profile_features: optional ``(n_neurons, n_features)`` float per-neuron
            features the layouts were computed from; shown in the neuron card.
    """

    name: str
    n_neurons: int
    layouts: dict[str, np.ndarray]
    layout_metrics: dict[str, dict[str, float]]
    group_sets: tuple[GroupSet, ...]
    training: TrainingSeries | None = None
    top_inputs: np.ndarray | None = None
    profile_features: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_str(self.name, "LayerView.name")
        where = f"layer {self.name!r}"
        if isinstance(self.n_neurons, bool) or not isinstance(
            self.n_neurons, int | np.integer
        ):
            raise TypeError(
                f"{where}: n_neurons must be an int; got {self.n_neurons!r}"
            )
        n_neurons = int(self.n_neurons)
        if n_neurons < 1:
            raise ValueError(f"{where}: n_neurons must be >= 1; got {n_neurons}")
        _set(self, "n_neurons", n_neurons)
        if not isinstance(self.layouts, Mapping) or not self.layouts:
            raise ValueError(
                f"{where}: layouts must be a non-empty dict method -> coords"
            )
        layouts = {}
        for method, coords in self.layouts.items():
            _check_str(method, f"{where}: layout method name")
            array = _frozen_array(coords, np.float64, f"{where} layout {method!r}", 2)
            if array.shape != (n_neurons, 2):
                raise ValueError(
                    f"{where}: layout {method!r} has shape {array.shape}; expected "
                    f"({n_neurons}, 2)"
                )
            if array.min() < -_COORD_TOLERANCE or array.max() > 1 + _COORD_TOLERANCE:
                raise ValueError(
                    f"{where}: layout {method!r} has coordinates outside [0, 1]; "
                    "rescale it (topojax.layout.base.rescale_unit)"
                )
            layouts[method] = array
        _set(self, "layouts", layouts)
        metrics = {}
        for method, report in dict(self.layout_metrics).items():
            if method not in layouts:
                raise ValueError(
                    f"{where}: layout_metrics names method {method!r}, which has no "
                    f"layout; methods: {sorted(layouts)}"
                )
            metrics[method] = {
                str(name): float(np.asarray(value)) for name, value in report.items()
            }
        _set(self, "layout_metrics", metrics)
        group_sets = tuple(self.group_sets)
        if not group_sets:
            raise ValueError(f"{where}: needs at least one GroupSet")
        for group_set in group_sets:
            if not isinstance(group_set, GroupSet):
                raise TypeError(f"{where}: group_sets must hold GroupSet objects")
            if group_set.n_neurons != n_neurons:
                raise ValueError(
                    f"{where}: GroupSet {group_set.name!r} has values for "
                    f"{group_set.n_neurons} neurons; expected {n_neurons}"
                )
        _unique([g.name for g in group_sets], f"{where}: group set names")
        _set(self, "group_sets", group_sets)
        if self.training is not None:
            if not isinstance(self.training, TrainingSeries):
                raise TypeError(f"{where}: training must be a TrainingSeries")
            if self.training.method not in layouts:
                raise ValueError(
                    f"{where}: training.method {self.training.method!r} is not one "
                    f"of the layouts {sorted(layouts)}"
                )
            if self.training.values.shape[2] != n_neurons:
                raise ValueError(
                    f"{where}: training values have {self.training.values.shape[2]} "
                    f"neurons; expected {n_neurons}"
                )
        if self.top_inputs is not None:
            top = _int_array(self.top_inputs, f"{where} top_inputs", 2)
            if top.shape[0] != n_neurons or top.shape[1] < 1:
                raise ValueError(
                    f"{where}: top_inputs has shape {top.shape}; expected "
                    f"({n_neurons}, k) with k >= 1"
                )
            if top.size and top.min() < 0:
                raise ValueError(f"{where}: top_inputs must be >= 0")
            _set(self, "top_inputs", top)
        if self.profile_features is not None:
            features = _frozen_array(
                self.profile_features, np.float64, f"{where} profile_features", 2
            )
            if features.shape[0] != n_neurons:
                raise ValueError(
                    f"{where}: profile_features has shape {features.shape}; expected "
                    f"({n_neurons}, n_features)"
                )
            _set(self, "profile_features", features)

    @property
    def methods(self) -> tuple[str, ...]:
        """The layout method names, in order."""
        return tuple(self.layouts)


@dataclasses.dataclass(frozen=True, eq=False)
class Analysis:
    """One analysed model: its layers and the inputs shown as thumbnails.

    Attributes:
        model_name: shown in the gallery, e.g. ``"digits MLP"``.
        layers: one or more `LayerView`s with distinct names.
        inputs: optional ``(n_inputs, h, w)`` or ``(n_inputs, h, w, 3)`` images
            with values in ``[0, 1]``; indexed by ``LayerView.top_inputs``.
        params: JSON-compatible parameters of the analysis, recorded in the
            gallery's manifest (NumPy/JAX numbers are converted).
        description: optional text shown on the index page.
    """

    model_name: str
    layers: tuple[LayerView, ...]
    inputs: np.ndarray | None = None
    params: dict = dataclasses.field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        _check_str(self.model_name, "Analysis.model_name")
        _check_str(self.description, "Analysis.description")
        where = f"model {self.model_name!r}"
        layers = tuple(self.layers)
        if not layers:
            raise ValueError(f"{where}: needs at least one LayerView")
        for layer in layers:
            if not isinstance(layer, LayerView):
                raise TypeError(f"{where}: layers must hold LayerView objects")
        _unique([layer.name for layer in layers], f"{where}: layer names")
        _set(self, "layers", layers)
        if not isinstance(self.params, Mapping):
            raise TypeError(f"{where}: params must be a dict")
        params = plain_data(dict(self.params), f"{where} params")
        json.dumps(params)
        _set(self, "params", params)
        n_inputs = 0
        if self.inputs is not None:
            raw = np.asarray(self.inputs)
            # float32 is exact enough for [0, 1] images and halves their memory.
            inputs = _frozen_array(raw, np.float32, f"{where} inputs", raw.ndim)
            _check_images(inputs, f"{where}: inputs", None)
            _set(self, "inputs", inputs)
            n_inputs = inputs.shape[0]
        for layer in layers:
            for group_set in layer.group_sets:
                if group_set.exemplars is None or group_set.exemplars.max() < 0:
                    continue
                if group_set.exemplars.max() >= n_inputs:
                    raise ValueError(
                        f"{where}: layer {layer.name!r} group set "
                        f"{group_set.name!r} exemplar index "
                        f"{int(group_set.exemplars.max())} out of range for "
                        f"{n_inputs} inputs"
                    )
            if layer.top_inputs is None:
                continue
            if self.inputs is None:
                raise ValueError(
                    f"{where}: layer {layer.name!r} has top_inputs but the analysis "
                    "has no inputs"
                )
            if layer.top_inputs.max() >= n_inputs:
                raise ValueError(
                    f"{where}: layer {layer.name!r} top_inputs index "
                    f"{int(layer.top_inputs.max())} out of range for {n_inputs} inputs"
                )
