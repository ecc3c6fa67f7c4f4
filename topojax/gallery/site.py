"""The site description: every page and every file of a gallery, as plain data.

`describe_site` turns analyses and build options into a `Site`: the pages (a
template name and a context of plain dicts, lists, strings and numbers) and the
jobs that produce the other files (map PNGs, per-layer data scripts, input
thumbnails). Nothing is rendered or written here; `topojax.gallery.build` runs
the jobs and renders the pages with Jinja2. All paths are relative POSIX paths
made of slugs from `topojax.gallery.names`, so user-supplied names never reach
the file system unsanitised.

A group set whose maps would say nothing gets a warning shown above its maps
(`flat_warning`): every value zero because a single group has inputs (a NAP is
a group's mean minus the mean over the non-empty groups), every value zero for
another reason, or all non-empty groups with identical values. Alt texts
shorten long names (`ALT_NAME_CHARS`) with an ellipsis; the caption next to
each map keeps the full name.

Directory layout of a gallery::

    index.html  manifest.json  assets/{topojax.css, topojax.js, colorbar.png}
    <model>/inputs/<i>.png                      top-activating input thumbnails
    <model>/<layer>/index.html                  layer page
    <model>/<layer>/compare.html                every method side by side
    <model>/<layer>/training.html               if the layer has a TrainingSeries
    <model>/<layer>/data.js                     hover/neuron-card data
    <model>/<layer>/maps/<method>/<style>/<set>/<group>.png
    <model>/<layer>/maps/training/<frame>/<group>.png
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from topojax.gallery.model import Analysis, GroupSet, LayerView
from topojax.gallery.names import unique_slugs
from topojax.gallery.order import group_order

__all__ = [
    "BuildOptions",
    "DataJob",
    "MapJob",
    "Page",
    "Site",
    "ThumbnailJob",
    "describe_site",
    "flat_warning",
    "format_number",
]

ASSETS = "assets"
COLORBAR = f"{ASSETS}/colorbar.png"
FAVICON = f"{ASSETS}/favicon.png"
STATIC_FILES = ("topojax.css", "topojax.js")
# Names of fixed directories that share a folder with slugged names.
_RESERVED_MODEL = ("assets",)
_RESERVED_LAYER = ("inputs",)
_RESERVED_METHOD = ("training",)
_INDEX_GROUPS_SHOWN = 12
ALT_NAME_CHARS = 80  # longer names are shortened in alt texts
# Values within this fraction of the largest one count as identical.
_IDENTICAL_RTOL = 1e-6


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """Checked build parameters (see `topojax.gallery.build_gallery`)."""

    resolution: int
    render_methods: tuple[str, ...]
    shape: str
    title: str
    build_date: str
    versions: dict[str, str]

    def parameters(self) -> dict:
        """The parameters recorded in the manifest."""
        return {
            "resolution": self.resolution,
            "render_methods": list(self.render_methods),
            "shape": self.shape,
            "title": self.title,
        }


@dataclasses.dataclass(frozen=True)
class Page:
    """One HTML page: where it goes, its template and its plain-data context."""

    path: str
    template: str
    context: dict


@dataclasses.dataclass(frozen=True)
class MapJob:
    """Render ``values`` rows of one source on one layout/style into PNG files.

    ``source`` is ``("groups", k)`` for ``layer.group_sets[k].values`` (one path
    per group, in the set's own order) or ``("training", 0)`` for
    ``layer.training.values`` flattened frame-major (one path per frame and
    group). ``clim`` is the symmetric colour limit.
    """

    analysis: int
    layer: int
    method: str
    style: str
    source: tuple[str, int]
    clim: float
    paths: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DataJob:
    """Write a layer's ``data.js`` (hover index, values, neuron-card data)."""

    path: str
    analysis: int
    layer: int
    methods: tuple[tuple[str, str], ...]  # (method name, id)
    styles: tuple[tuple[str, str], ...]  # (render style, id)
    sets: tuple[tuple[str, tuple[int, ...]], ...]  # (set id, panel order)
    training: tuple[str, str] | None  # (method id, style id)
    inputs_prefix: str  # relative to the layer directory


@dataclasses.dataclass(frozen=True)
class ThumbnailJob:
    """Write an input image of an analysis as a small PNG.

    Input ``index`` of ``Analysis.inputs``; with ``group_set`` ``(layer, k)``,
    the mean input of group ``index`` of that layer's ``k``-th group set.
    """

    path: str
    analysis: int
    index: int
    group_set: tuple[int, int] | None = None


@dataclasses.dataclass(frozen=True)
class Site:
    """Everything a gallery consists of, before anything is rendered."""

    options: BuildOptions
    pages: tuple[Page, ...]
    maps: tuple[MapJob, ...]
    data: tuple[DataJob, ...]
    thumbnails: tuple[ThumbnailJob, ...]
    models: tuple[dict, ...]  # manifest summary


def format_number(value: float | None, digits: int = 3) -> str:
    """A short, deterministic text form of a number (``"–"`` for None/NaN)."""
    if value is None or not math.isfinite(value):
        return "–"
    if value == int(value) and abs(value) < 1e5:
        return str(int(value))
    if 1e-3 <= abs(value) < 1e5:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
        return f"{value:.{decimals}f}"
    return f"{value:.{digits - 1}e}"


def _clim(values: np.ndarray) -> float:
    limit = float(np.max(np.abs(values))) if values.size else 0.0
    return limit if limit > 0 else 1.0


def _order(group_set: GroupSet) -> tuple[int, ...]:
    if group_set.order is not None:
        return group_set.order
    return group_order(group_set.values)


def _short(name: str) -> str:
    """``name`` cut to `ALT_NAME_CHARS` characters with an ellipsis."""
    if len(name) <= ALT_NAME_CHARS:
        return name
    return name[: ALT_NAME_CHARS - 1] + "…"


def flat_warning(group_set: GroupSet) -> str:
    """Why the maps of ``group_set`` would be blank or all alike, or ``""``.

    Returns:
        A sentence for the page when every value is zero (with the reason if a
        single group has inputs) or when all non-empty groups (at least two)
        have identical values (within ``1e-6`` of the largest value); else
        ``""``.
    """
    values = group_set.values
    filled = np.flatnonzero(group_set.counts > 0)
    if not np.any(values):
        if len(filled) == 1:
            name = _short(group_set.group_names[filled[0]])
            return (
                f'Only group "{name}" has inputs, so every value is zero (a NAP is '
                "a group's mean minus the mean over the non-empty groups) and the "
                "maps are blank. Group the inputs into at least two non-empty "
                "groups."
            )
        return "Every value in this group set is zero, so the maps are blank."
    rows = values[filled] if len(filled) >= 2 else values
    if len(rows) >= 2:
        spread = np.max(np.abs(rows - rows[:1]))
        if spread <= _IDENTICAL_RTOL * np.max(np.abs(rows)):
            return (
                "All groups with inputs have identical values, so their maps are "
                "the same: the grouping does not separate what the layer does."
            )
    return ""


def _count_label(count: int) -> str:
    return "n = 0 (empty)" if count == 0 else f"n = {count}"


class _Paths:
    """Slugs and paths of one layer (every name goes through `unique_slugs`)."""

    def __init__(self, model_slug: str, layer_slug: str, layer: LayerView, styles):
        self.dir = f"{model_slug}/{layer_slug}"
        method_ids = unique_slugs(layer.methods, reserved=_RESERVED_METHOD)
        self.method_ids = dict(zip(layer.methods, method_ids, strict=True))
        self.style_ids = dict(zip(styles, unique_slugs(styles), strict=True))
        set_names = [group_set.name for group_set in layer.group_sets]
        self.set_ids = unique_slugs(set_names)
        self.group_slugs = [unique_slugs(s.group_names) for s in layer.group_sets]
        self.training_slugs = (
            unique_slugs(layer.training.group_names) if layer.training else ()
        )

    def map(self, method: str, style: str, k: int, g: int) -> str:
        """Path of group ``g`` of set ``k`` under one method and style."""
        return (
            f"{self.dir}/maps/{self.method_ids[method]}/{self.style_ids[style]}/"
            f"{self.set_ids[k]}/{self.group_slugs[k][g]}.png"
        )

    def mean_input(self, k: int, g: int) -> str:
        """Path of the mean input image of group ``g`` of set ``k``."""
        return f"{self.dir}/means/{self.set_ids[k]}/{self.group_slugs[k][g]}.png"

    def training_map(self, frame: int, g: int, n_frames: int) -> str:
        """Path of training group ``g`` at ``frame``."""
        width = len(str(n_frames - 1))
        return (
            f"{self.dir}/maps/training/{frame:0{width}d}/{self.training_slugs[g]}.png"
        )


def _map_entry(
    src: str,
    alt: str,
    caption: str,
    count_label: str,
    attributes: dict,
    inputs: Sequence[dict] = (),
) -> dict:
    return {
        "src": src,
        "alt": alt,
        "caption": caption,
        "count_label": count_label,
        "empty": count_label.endswith("(empty)"),
        "attributes": attributes,
        "inputs": list(inputs),
    }


def _group_inputs(group_set: GroupSet, g: int, mean_src: str, what: str) -> list[dict]:
    """The exemplar and mean input images drawn above group ``g``'s map."""
    shown = []
    if group_set.exemplars is not None and group_set.exemplars[g] >= 0:
        shown.append(
            {
                "src": f"../inputs/{int(group_set.exemplars[g])}.png",
                "alt": f"An example input of {what}",
                "label": "example",
            }
        )
    if group_set.mean_inputs is not None and group_set.counts[g] > 0:
        shown.append(
            {"src": mean_src, "alt": f"The mean input of {what}", "label": "mean"}
        )
    return shown


def _group_set_context(
    analysis: Analysis,
    layer: LayerView,
    k: int,
    paths: _Paths,
    options: BuildOptions,
    order: tuple[int, ...],
) -> dict:
    group_set = layer.group_sets[k]
    set_id = paths.set_ids[k]
    clim = _clim(group_set.values)
    variants = []
    for method in layer.methods:
        for style in options.render_methods:
            maps = []
            for g in order:
                name = group_set.group_names[g]
                count = int(group_set.counts[g])
                alt = (
                    f"Map of {_short(group_set.name)} group {_short(name)} "
                    f"({_count_label(count)}) in layer {_short(layer.name)} of "
                    f"{_short(analysis.model_name)}: layout {_short(method)}, "
                    f"{style} rendering"
                )
                maps.append(
                    _map_entry(
                        src=paths.map(method, style, k, g)[len(paths.dir) + 1 :],
                        alt=alt,
                        caption=name,
                        count_label=_count_label(count),
                        attributes={
                            "method": paths.method_ids[method],
                            "style": paths.style_ids[style],
                            "set": set_id,
                            "group": g,
                        },
                        inputs=_group_inputs(
                            group_set,
                            g,
                            paths.mean_input(k, g)[len(paths.dir) + 1 :],
                            f"group {_short(name)}",
                        ),
                    )
                )
            variants.append(
                {
                    "id": f"{set_id}--{paths.method_ids[method]}--"
                    f"{paths.style_ids[style]}",
                    "method": method,
                    "method_id": paths.method_ids[method],
                    "style": style,
                    "style_id": paths.style_ids[style],
                    "maps": maps,
                }
            )
    return {
        "id": set_id,
        "name": group_set.name,
        "description": group_set.description,
        "warning": flat_warning(group_set),
        "n_groups": group_set.n_groups,
        "total_count": int(group_set.counts.sum()),
        "clim": format_number(clim),
        "clim_neg": format_number(-clim),
        "variants": variants,
    }


def _metrics_context(layer: LayerView, method_ids: dict[str, str]) -> dict:
    names: list[str] = []
    for report in layer.layout_metrics.values():
        names.extend(name for name in report if name not in names)
    rows = [
        {
            "method": method,
            "method_id": method_ids[method],
            "values": [
                format_number(layer.layout_metrics.get(method, {}).get(name))
                for name in names
            ],
        }
        for method in layer.methods
    ]
    return {"names": names, "rows": rows}


def _training_order(layer: LayerView, orders: Sequence[tuple[int, ...]]):
    """Training panel order: that of a group set with the same groups, if any.

    Otherwise the dendrogram order of the last frame's values.
    """
    training = layer.training
    for group_set, order in zip(layer.group_sets, orders, strict=True):
        if group_set.group_names == training.group_names:
            return order
    return group_order(training.values[-1])


def _training_context(
    analysis: Analysis,
    layer: LayerView,
    paths: _Paths,
    options: BuildOptions,
    order: tuple[int, ...],
) -> dict:
    training = layer.training
    style = options.render_methods[0]
    frames = []
    for t, label in enumerate(training.labels):
        maps = []
        for g in order:
            name = training.group_names[g]
            alt = (
                f"Map of group {_short(name)} at {_short(label)} in layer "
                f"{_short(layer.name)} of {_short(analysis.model_name)}: layout "
                f"{_short(training.method)}, {style} rendering"
            )
            maps.append(
                _map_entry(
                    src=paths.training_map(t, g, training.n_frames)[
                        len(paths.dir) + 1 :
                    ],
                    alt=alt,
                    caption=name,
                    count_label=""
                    if training.counts is None
                    else _count_label(int(training.counts[g])),
                    attributes={
                        "method": paths.method_ids[training.method],
                        "style": paths.style_ids[style],
                        "set": "",
                        "group": g,
                        "frame": t,
                    },
                )
            )
        metrics = [
            {"name": name, "value": format_number(float(values[t]))}
            for name, values in training.metrics.items()
            if np.isfinite(values[t])
        ]
        frames.append({"index": t, "label": label, "maps": maps, "metrics": metrics})
    clim = _clim(training.values)
    return {
        "method": training.method,
        "style": style,
        "description": training.description,
        "frames": frames,
        "n_frames": training.n_frames,
        "clim": format_number(clim),
        "clim_neg": format_number(-clim),
    }


def _layer_pages(
    a: int,
    analysis: Analysis,
    i: int,
    model_slug: str,
    layer_slugs: Sequence[str],
    options: BuildOptions,
) -> tuple[list[Page], list[MapJob], DataJob, dict]:
    layer = analysis.layers[i]
    paths = _Paths(model_slug, layer_slugs[i], layer, options.render_methods)
    orders = [_order(group_set) for group_set in layer.group_sets]
    group_sets = [
        _group_set_context(analysis, layer, k, paths, options, orders[k])
        for k in range(len(layer.group_sets))
    ]
    jobs = [
        MapJob(
            analysis=a,
            layer=i,
            method=method,
            style=style,
            source=("groups", k),
            clim=_clim(group_set.values),
            paths=tuple(
                paths.map(method, style, k, g) for g in range(group_set.n_groups)
            ),
        )
        for method in layer.methods
        for style in options.render_methods
        for k, group_set in enumerate(layer.group_sets)
    ]
    training = None
    if layer.training is not None:
        training = _training_context(
            analysis, layer, paths, options, _training_order(layer, orders)
        )
        jobs.append(
            MapJob(
                analysis=a,
                layer=i,
                method=layer.training.method,
                style=options.render_methods[0],
                source=("training", 0),
                clim=_clim(layer.training.values),
                paths=tuple(
                    paths.training_map(t, g, layer.training.n_frames)
                    for t in range(layer.training.n_frames)
                    for g in range(len(layer.training.group_names))
                ),
            )
        )
    data_job = DataJob(
        path=f"{paths.dir}/data.js",
        analysis=a,
        layer=i,
        methods=tuple(paths.method_ids.items()),
        styles=tuple(paths.style_ids.items()),
        sets=tuple(zip(paths.set_ids, orders, strict=True)),
        training=None
        if layer.training is None
        else (
            paths.method_ids[layer.training.method],
            paths.style_ids[options.render_methods[0]],
        ),
        inputs_prefix="../inputs/",
    )
    tabs = [("index.html", "Maps"), ("compare.html", "Compare methods")]
    if training is not None:
        tabs.append(("training.html", "Training"))
    siblings = [
        {
            "name": other.name,
            "href": f"../{layer_slugs[j]}/index.html",
            "current": j == i,
        }
        for j, other in enumerate(analysis.layers)
    ]
    common = {
        "root": "../../",
        "model": analysis.model_name,
        "layer": layer.name,
        "n_neurons": layer.n_neurons,
        "resolution": options.resolution,
        "methods": [
            {"id": paths.method_ids[m], "name": m, "default": n == 0}
            for n, m in enumerate(layer.methods)
        ],
        "styles": [
            {"id": paths.style_ids[s], "name": s, "default": n == 0}
            for n, s in enumerate(options.render_methods)
        ],
        "metrics": _metrics_context(layer, paths.method_ids),
        "group_sets": group_sets,
        "siblings": siblings,
        "has_top_inputs": layer.top_inputs is not None,
        "crumbs": [
            {"label": analysis.model_name, "href": f"../../index.html#{model_slug}"},
            {"label": layer.name, "href": "index.html"},
        ],
    }
    pages = []
    for href, label in tabs:
        tab_list = [
            {"href": other, "label": text, "current": other == href}
            for other, text in tabs
        ]
        context = {**common, "tabs": tab_list, "page_label": label}
        if href == "training.html":
            context["training"] = training
        template = {
            "index.html": "layer.html.j2",
            "compare.html": "compare.html.j2",
            "training.html": "training.html.j2",
        }[href]
        pages.append(Page(f"{paths.dir}/{href}", template, context))
    first = group_sets[0]["variants"][0]["maps"][0]
    summary = {
        "name": layer.name,
        "href": f"{paths.dir}/index.html",
        "thumb": {"src": f"{paths.dir}/{first['src']}", "alt": first["alt"]},
        "n_neurons": layer.n_neurons,
        "methods": list(layer.methods),
        "group_sets": [
            {
                "name": group_set.name,
                "n_groups": group_set.n_groups,
                "groups_shown": [
                    group_set.group_names[g] for g in orders[k][:_INDEX_GROUPS_SHOWN]
                ],
                "n_more": max(0, group_set.n_groups - _INDEX_GROUPS_SHOWN),
            }
            for k, group_set in enumerate(layer.group_sets)
        ],
        "has_training": layer.training is not None,
        "n_frames": 0 if layer.training is None else layer.training.n_frames,
        "slug": layer_slugs[i],
    }
    return pages, jobs, data_job, summary


def describe_site(analyses: Sequence[Analysis], options: BuildOptions) -> Site:
    """Describe every page and file of the gallery of ``analyses``.

    Args:
        analyses: the models to show, in order.
        options: checked build options.

    Returns:
        The `Site`; it references analyses and layers by index.
    """
    model_slugs = unique_slugs(
        [analysis.model_name for analysis in analyses], reserved=_RESERVED_MODEL
    )
    pages: list[Page] = []
    maps: list[MapJob] = []
    data: list[DataJob] = []
    thumbnails: list[ThumbnailJob] = []
    index_models = []
    manifest_models = []
    for a, analysis in enumerate(analyses):
        layer_slugs = unique_slugs(
            [layer.name for layer in analysis.layers], reserved=_RESERVED_LAYER
        )
        summaries = []
        for i in range(len(analysis.layers)):
            layer_pages, jobs, data_job, summary = _layer_pages(
                a, analysis, i, model_slugs[a], layer_slugs, options
            )
            pages.extend(layer_pages)
            maps.extend(jobs)
            data.append(data_job)
            summaries.append(summary)
        used = sorted(
            {
                int(index)
                for layer in analysis.layers
                if layer.top_inputs is not None
                for index in np.unique(layer.top_inputs)
            }
            | {
                int(index)
                for layer in analysis.layers
                for group_set in layer.group_sets
                if group_set.exemplars is not None
                for index in group_set.exemplars[group_set.exemplars >= 0]
            }
        )
        thumbnails.extend(
            ThumbnailJob(f"{model_slugs[a]}/inputs/{index}.png", a, index)
            for index in used
        )
        for i, layer in enumerate(analysis.layers):
            paths = _Paths(
                model_slugs[a], layer_slugs[i], layer, options.render_methods
            )
            thumbnails.extend(
                ThumbnailJob(paths.mean_input(k, g), a, g, (i, k))
                for k, group_set in enumerate(layer.group_sets)
                if group_set.mean_inputs is not None
                for g in np.flatnonzero(group_set.counts > 0).tolist()
            )
        index_models.append(
            {
                "name": analysis.model_name,
                "slug": model_slugs[a],
                "description": analysis.description,
                "params": [
                    (key, _param_text(value))
                    for key, value in sorted(analysis.params.items())
                ],
                "layers": summaries,
            }
        )
        manifest_models.append(
            {
                "name": analysis.model_name,
                "path": model_slugs[a],
                "params": analysis.params,
                "layers": [
                    {
                        "name": layer.name,
                        "path": f"{model_slugs[a]}/{layer_slugs[i]}",
                        "n_neurons": layer.n_neurons,
                        "methods": list(layer.methods),
                        "group_sets": [s.name for s in layer.group_sets],
                        "training_frames": 0
                        if layer.training is None
                        else layer.training.n_frames,
                    }
                    for i, layer in enumerate(analysis.layers)
                ],
            }
        )
    all_methods = []
    for analysis in analyses:
        for layer in analysis.layers:
            all_methods.extend(m for m in layer.methods if m not in all_methods)
    index = Page(
        "index.html",
        "index.html.j2",
        {
            "root": "",
            "models": index_models,
            "all_methods": all_methods,
            "styles": list(options.render_methods),
            "shape": options.shape,
            "resolution": options.resolution,
            "crumbs": [],
        },
    )
    return Site(
        options=options,
        pages=(index, *pages),
        maps=tuple(maps),
        data=tuple(data),
        thumbnails=tuple(thumbnails),
        models=tuple(manifest_models),
    )


def _param_text(value) -> str:
    if isinstance(value, float):
        return format_number(value, digits=4)
    if isinstance(value, list):
        return ", ".join(_param_text(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_param_text(v)}" for k, v in value.items())
    return "–" if value is None else str(value)
