"""Colouring maps: value images -> RGBA bytes, colour bars, a static figure.

`colorize` evaluates a matplotlib colour map once into a 256-entry lookup table
(cached per name) and then colours any number of images with one jitted gather,
so no matplotlib code runs per map. Its indexing follows matplotlib's
``Colormap.__call__`` applied to ``Normalize(lo, hi)``: a value ``v`` takes entry
``floor(256 * (v - lo) / (hi - lo))``, clipped to ``[0, 255]`` (values outside
the limits take the end colours). NaN pixels become transparent white
``(255, 255, 255, 0)``: dropping the alpha channel gives the paper's white
background outside the convex hull.

Default limits are symmetric, ``(-a, a)`` with ``a = max |value|`` over ALL the
images given (e.g. all groups of a layer), so that the panels share one scale
and white means 0 (the group average, for NAPs), as in the paper.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# RGBA given to NaN pixels.
NAN_RGBA = (255, 255, 255, 0)
LUT_SIZE = 256


@functools.lru_cache(maxsize=64)
def _named_lut(name: str) -> np.ndarray:
    import matplotlib

    try:
        colormap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(
            f"unknown colour map {name!r}; expected a matplotlib colour map name "
            "such as 'bwr', 'RdBu_r', 'coolwarm', 'viridis' (see "
            "matplotlib.colormaps)"
        ) from None
    return _colormap_lut(colormap)


def _colormap_lut(colormap) -> np.ndarray:
    resampled = colormap.resampled(LUT_SIZE)
    lut = np.asarray(resampled(np.arange(LUT_SIZE), bytes=True), dtype=np.uint8)
    lut.setflags(write=False)
    return lut


def lookup_table(cmap="bwr") -> np.ndarray:
    """The colour map as a ``(256, 4)`` uint8 RGBA table.

    Args:
        cmap: a matplotlib colour-map name (cached) or a
            ``matplotlib.colors.Colormap``.

    Returns:
        ``(256, 4)`` uint8, read-only.

    Raises:
        ValueError: unknown colour-map name.
    """
    if isinstance(cmap, str):
        return _named_lut(cmap)
    if not hasattr(cmap, "resampled"):
        raise ValueError(
            f"cmap must be a colour-map name or a matplotlib Colormap; got {cmap!r}"
        )
    return _colormap_lut(cmap)


@jax.jit
def _absmax(images: jax.Array) -> jax.Array:
    magnitude = jnp.where(jnp.isnan(images), 0.0, jnp.abs(images))
    return jnp.max(magnitude, initial=0.0)


def symmetric_clim(images) -> float:
    """``max |value|`` over all (non-NaN) pixels of all images.

    Use it to share one scale across several calls (e.g. all epochs of a
    layer): ``colorize(x, clim=symmetric_clim(all_images))``.

    Returns:
        The absolute maximum, or 1.0 if there is no non-zero finite pixel.
    """
    array = jnp.asarray(images, dtype=jnp.float32)
    if array.size == 0:
        return 1.0
    value = float(_absmax(array))
    return value if value > 0 and math.isfinite(value) else 1.0


def resolve_clim(images, clim=None) -> tuple[float, float]:
    """Colour limits ``(lo, hi)`` from a `colorize`-style ``clim`` argument.

    Args:
        images: the value images (only read when ``clim`` is None).
        clim: None (symmetric, `symmetric_clim` of ``images``), a positive
            scalar ``a`` (``(-a, a)``) or a ``(lo, hi)`` pair with ``lo < hi``.

    Returns:
        ``(lo, hi)`` floats.

    Raises:
        ValueError: non-finite, non-positive scalar or ``lo >= hi``.
    """
    if clim is None:
        limit = symmetric_clim(images)
        return -limit, limit
    if np.ndim(clim) == 0:
        limit = float(clim)
        if not (0 < limit < math.inf):
            raise ValueError(f"scalar clim must be positive and finite; got {clim!r}")
        return -limit, limit
    pair = tuple(float(c) for c in np.asarray(clim).ravel())
    if len(pair) != 2 or not all(map(math.isfinite, pair)) or pair[0] >= pair[1]:
        raise ValueError(
            f"clim must be None, a positive scalar or a (lo, hi) pair with lo < hi; "
            f"got {clim!r}"
        )
    return pair


@jax.jit
def _colorize(images, lo, hi, lut):
    scaled = (images - lo) * (LUT_SIZE / (hi - lo))
    index = jnp.clip(jnp.floor(scaled), 0, LUT_SIZE - 1).astype(jnp.int32)
    index = jnp.where(jnp.isnan(images), LUT_SIZE, index)
    table = jnp.concatenate([lut, jnp.asarray([NAN_RGBA], jnp.uint8)], axis=0)
    # Gather whole RGBA pixels as one uint32 each rather than 4 bytes apart.
    packed = jax.lax.bitcast_convert_type(table, jnp.uint32)
    return jax.lax.bitcast_convert_type(packed[index], jnp.uint8)


def colorize(images, *, cmap="bwr", clim=None) -> jax.Array:
    """Colour value images with a colour map: ``(..., H, W)`` -> RGBA bytes.

    Args:
        images: ``(n_groups, R, R)`` float images (any ``(..., H, W)``), NaN
            where nothing is drawn.
        cmap: matplotlib colour-map name or ``Colormap`` (default ``"bwr"``:
            blue below 0, white at 0, red above).
        clim: None for symmetric limits ``±max|value|`` over all given images;
            a positive scalar ``a`` for ``(-a, a)``; or a ``(lo, hi)`` pair.

    Returns:
        ``(..., H, W, 4)`` uint8 RGBA; alpha 0 (and white) where NaN. Same
        values and limits give the same bytes.

    Raises:
        ValueError: bad ``cmap`` or ``clim``, or non-float images.
    """
    array = jnp.asarray(images)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        array = array.astype(jnp.float32)
    if array.ndim < 2:
        raise ValueError(f"images must be (..., H, W); got shape {array.shape}")
    lut = jnp.asarray(lookup_table(cmap))
    lo, hi = resolve_clim(array, clim)
    return _colorize(array.astype(jnp.float32), lo, hi, lut)


def colorbar(
    cmap="bwr",
    clim=1.0,
    *,
    height: int = 128,
    width: int = 12,
    orientation: str = "vertical",
) -> np.ndarray:
    """A colour-bar image matching `colorize`.

    Pixel row/column ``k`` of ``n`` shows the value at its centre,
    ``lo + (k + 0.5) / n * (hi - lo)``, increasing upwards (vertical) or to the
    right (horizontal).

    Args:
        cmap: as in `colorize`.
        clim: a positive scalar ``a`` (``(-a, a)``) or ``(lo, hi)``.
        height: image height in pixels.
        width: image width in pixels.
        orientation: ``"vertical"`` or ``"horizontal"``.

    Returns:
        ``(height, width, 4)`` uint8 RGBA.

    Raises:
        ValueError: bad sizes, orientation, ``cmap`` or ``clim`` (None is not
            allowed: there are no images to take it from).
    """
    if clim is None:
        raise ValueError("colorbar needs explicit clim (a scalar or (lo, hi))")
    for name, size in (("height", height), ("width", width)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must be a positive int; got {size!r}")
    lo, hi = resolve_clim(None, clim)
    along = {"vertical": height, "horizontal": width}
    if orientation not in along:
        raise ValueError(
            f"unknown orientation {orientation!r}; expected one of {list(along)}"
        )
    n = along[orientation]
    ramp = lo + (np.arange(n) + 0.5) / n * (hi - lo)
    if orientation == "vertical":
        values = np.repeat(ramp[::-1, None], width, axis=1)
    else:
        values = np.repeat(ramp[None, :], height, axis=0)
    return np.asarray(colorize(values.astype(np.float32), cmap=cmap, clim=(lo, hi)))


def figure(
    image,
    path,
    *,
    coords=None,
    shape: str = "square",
    cmap="bwr",
    clim=None,
    contours: int = 6,
    title: str | None = None,
    size_inches: float = 2.0,
    dpi: int = 150,
    show_colorbar: bool = False,
) -> Path:
    """Save one map as a static figure (PNG, PDF or SVG, from the suffix).

    The map is drawn with `colorize` (so colours equal the gallery's), optional
    contour lines of the values, and optional neuron markers; axes are off.
    This uses matplotlib (``Figure`` + Agg, no pyplot state) and is meant for
    papers, not for thousands of maps (use `colorize` + `topojax.png`).

    Args:
        image: ``(R, R)`` value image (NaN outside), e.g. ``render(...)[g]``.
        path: output file; its suffix selects the format.
        coords: optional ``(n_neurons, 2)`` positions to mark (as given to
            `render`; placed for ``shape`` like the renderer does).
        shape: the shape the image was rendered with, for the markers.
        cmap: colour map.
        clim: as in `colorize` (pass the layer's shared limit).
        contours: number of contour levels (0 for none).
        title: optional title.
        size_inches: figure side in inches.
        dpi: raster resolution.
        show_colorbar: add a colour bar.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    from topojax.render import place_in_shape

    values = np.asarray(image, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"image must be (R, R); got shape {values.shape}")
    lo, hi = resolve_clim(values, clim)
    rgba = np.asarray(colorize(values, cmap=cmap, clim=(lo, hi)))
    fig = Figure(figsize=(size_inches, size_inches))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1) if title is None else (0, 0, 1, 0.9))
    ax.imshow(rgba, extent=(0, 1, 0, 1), origin="upper", interpolation="nearest")
    rows, cols = values.shape
    if (
        contours
        and np.isfinite(values).sum() > 3
        and np.nanmax(values) > np.nanmin(values)
    ):
        x = (np.arange(cols) + 0.5) / cols
        y = 1.0 - (np.arange(rows) + 0.5) / rows
        ax.contour(
            x, y, np.ma.masked_invalid(values), levels=contours,
            colors="k", linewidths=0.4, alpha=0.6,
        )  # fmt: skip
    if coords is not None:
        points = place_in_shape(coords, shape)
        ax.scatter(points[:, 0], points[:, 1], s=1.5, c="k", linewidths=0)
    if show_colorbar:
        import matplotlib.cm

        mappable = matplotlib.cm.ScalarMappable(
            cmap=ListedColormap(lookup_table(cmap)[:, :3] / 255.0)
        )
        mappable.set_clim(lo, hi)
        fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=dpi, metadata=_no_metadata(path.suffix))
    return path


def _no_metadata(suffix: str) -> dict | None:
    # Keep saved figures reproducible: no software/date stamps where supported.
    return {
        ".png": {"Software": None},
        ".pdf": {"Creator": None, "Producer": None, "CreationDate": None},
        ".svg": {"Creator": None, "Date": None},
    }.get(suffix.lower())
