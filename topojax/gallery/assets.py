"""Run the file jobs of a `Site`: map PNGs, per-layer data scripts, thumbnails.

Maps are rendered with `topojax.render` (one plan per layout and style, reused
for every group set and training frame), coloured with `topojax.colors` and
encoded with `topojax.png`; nothing here draws pixels itself. Every function
returns ``{relative path: bytes}`` and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from topojax.colors import colorbar, colorize
from topojax.gallery.escape import js_assignment
from topojax.gallery.model import Analysis
from topojax.gallery.site import DataJob, MapJob, ThumbnailJob
from topojax.png import encode_png
from topojax.render import RenderPlan, apply_plan, nearest_neuron, render_plan

__all__ = [
    "CMAP",
    "PNG_LEVEL",
    "colorbar_png",
    "favicon_png",
    "data_script",
    "map_pngs",
    "rle_encode",
    "thumbnail_png",
]

CMAP = "bwr"
# zlib level of the gallery's PNGs: on 128 x 128 maps level 6 is ~23 % smaller than
# level 1 at ~4x the time; level 9 saves another ~1 % at 3x the time of level 6.
PNG_LEVEL = 6
# Values in data.js: 3 significant digits, as shown by the read-out and the card.
_SIGNIFICANT = 3
_THUMB_MIN_SIDE = 48


Plans = dict[tuple[int, int, str, str], RenderPlan]


def _plan(
    plans: Plans,
    analyses: Sequence[Analysis],
    key: tuple[int, int, str, str],
    *,
    resolution: int,
    shape: str,
) -> RenderPlan:
    """The render plan of (analysis, layer, method, style), made once per build."""
    if key not in plans:
        a, i, method, style = key
        plans[key] = render_plan(
            analyses[a].layers[i].layouts[method],
            resolution=resolution,
            method=style,
            shape=shape,
        )
    return plans[key]


def map_pngs(
    jobs: Iterable[MapJob],
    analyses: Sequence[Analysis],
    *,
    resolution: int,
    shape: str,
    plans: Plans | None = None,
) -> dict[str, bytes]:
    """Render, colour and encode the maps of ``jobs``.

    Args:
        jobs: map jobs of a `Site`.
        analyses: the analyses the jobs index into.
        resolution: image side in pixels.
        shape: ``"square"`` or ``"disk"``.
        plans: render plans by ``(analysis, layer, method, style)``, filled in
            as needed (share it with `data_script` to plan each layout once).

    Returns:
        PNG bytes by relative path.
    """
    plans = {} if plans is None else plans
    files: dict[str, bytes] = {}
    for job in jobs:
        layer = analyses[job.analysis].layers[job.layer]
        key = (job.analysis, job.layer, job.method, job.style)
        plan = _plan(plans, analyses, key, resolution=resolution, shape=shape)
        kind, k = job.source
        if kind == "groups":
            values = layer.group_sets[k].values
        else:
            values = layer.training.values.reshape(-1, layer.n_neurons)
        images = apply_plan(plan, values.astype(np.float32))
        rgba = np.asarray(colorize(images, cmap=CMAP, clim=job.clim))
        for path, image in zip(job.paths, rgba, strict=True):
            files[path] = encode_png(image, compress_level=PNG_LEVEL)
    return files


def colorbar_png(width: int = 256, height: int = 12) -> bytes:
    """The shared horizontal colour bar (values from -1 to 1 of each set's limit)."""
    image = colorbar(CMAP, 1.0, height=height, width=width, orientation="horizontal")
    return encode_png(image, compress_level=PNG_LEVEL)


def favicon_png(size: int = 16) -> bytes:
    """A small site icon: a diagonal blue-white-red ramp.

    Pages link to it so that browsers do not request ``/favicon.ico`` from the
    root of the host (outside the gallery).
    """
    ramp = np.linspace(-1.0, 1.0, size)
    image = (ramp[None, :] - ramp[::-1, None]) / 2
    return encode_png(np.asarray(colorize(image, cmap=CMAP, clim=1.0)))


def thumbnail_png(job: ThumbnailJob, analyses: Sequence[Analysis]) -> bytes:
    """An input image in ``[0, 1]`` as an RGB PNG (small ones are upscaled)."""
    analysis = analyses[job.analysis]
    if job.group_set is None:
        image = analysis.inputs[job.index]
    else:
        layer, k = job.group_set
        image = analysis.layers[layer].group_sets[k].mean_inputs[job.index]
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    side = max(pixels.shape[0], pixels.shape[1])
    scale = max(1, -(-_THUMB_MIN_SIDE // side))
    pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    return encode_png(pixels, compress_level=PNG_LEVEL)


def rle_encode(indices: np.ndarray) -> list[int]:
    """Run-length code of a neuron-index image (row-major).

    Args:
        indices: ``(R, R)`` int, -1 where no neuron is drawn.

    Returns:
        ``[value, run, value, run, ...]`` with ``value = index + 1`` (0 for
        none); runs sum to ``R * R``.
    """
    flat = np.asarray(indices, dtype=np.int64).ravel() + 1
    if flat.size == 0:
        return []
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    runs = np.diff(np.r_[starts, flat.size])
    return np.stack([flat[starts], runs], axis=1).ravel().tolist()


def _rounded(values: np.ndarray) -> list:
    """Values rounded to a few significant digits (smaller, deterministic JSON)."""
    flat = [float(f"{v:.{_SIGNIFICANT}g}") for v in np.asarray(values).ravel()]
    return np.asarray(flat).reshape(values.shape).tolist()


def data_script(
    job: DataJob,
    analyses: Sequence[Analysis],
    *,
    resolution: int,
    shape: str,
    plans: Plans | None = None,
) -> dict[str, bytes]:
    """The layer's ``data.js``: assigns ``window.TOPOJAX_LAYER`` for the page script.

    It holds, per layout method, the run-length coded per-pixel neuron index
    (`topojax.render.nearest_neuron` over the whole image) and, per render
    style, the run-length coded mask of drawn pixels (0 drawn, -1 transparent:
    the render plan's mask), so that the index where drawn and -1 elsewhere is
    ``nearest_neuron(..., method=style)``; the values of every group set (for
    the hover read-out and the neuron card's bar charts), the training values,
    the top-activating input thumbnails and the profile features.

    Args:
        job: the layer's data job.
        analyses: the analyses the job indexes into.
        resolution: image side in pixels.
        shape: ``"square"`` or ``"disk"``.
        plans: shared render plans (see `map_pngs`).

    Returns:
        ``{job.path: bytes}``.
    """
    plans = {} if plans is None else plans
    analysis = analyses[job.analysis]
    layer = analysis.layers[job.layer]
    nearest = {}
    for method, method_id in job.methods:
        coords = layer.layouts[method]
        # The styles differ only in where a neuron is drawn: store the nearest
        # neuron of every pixel once and one drawn-or-not mask per style.
        every_pixel = nearest_neuron(
            coords,
            resolution=resolution,
            shape=shape,
            method="nearest",
            max_distance=float("inf"),
        )
        masks = {}
        for style, style_id in job.styles:
            key = (job.analysis, job.layer, method, style)
            plan = _plan(plans, analyses, key, resolution=resolution, shape=shape)
            drawn = np.asarray(plan.mask).reshape(resolution, resolution)
            masks[style_id] = rle_encode(np.where(drawn, 0, -1))
        nearest[method_id] = {"index": rle_encode(every_pixel), "drawn": masks}
    sets = {}
    for group_set, (set_id, order) in zip(layer.group_sets, job.sets, strict=True):
        sets[set_id] = {
            "name": group_set.name,
            "groups": list(group_set.group_names),
            "counts": group_set.counts.tolist(),
            "order": list(order),
            "values": _rounded(group_set.values),
        }
    training = None
    if job.training is not None:
        training = {
            "method": job.training[0],
            "style": job.training[1],
            "labels": list(layer.training.labels),
            "groups": list(layer.training.group_names),
            "values": _rounded(layer.training.values),
        }
    top_inputs = None
    if layer.top_inputs is not None:
        top_inputs = layer.top_inputs.tolist()
    features = None
    if layer.profile_features is not None:
        features = _rounded(layer.profile_features)
    data = {
        "model": analysis.model_name,
        "layer": layer.name,
        "n_neurons": layer.n_neurons,
        "resolution": resolution,
        "methods": {method_id: method for method, method_id in job.methods},
        "nearest": nearest,
        "sets": sets,
        "training": training,
        "top_inputs": top_inputs,
        "inputs_prefix": job.inputs_prefix,
        "features": features,
    }
    return {job.path: js_assignment("TOPOJAX_LAYER", data).encode("ascii")}
