import importlib

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import Normalize
from PIL import Image

from topojax.colors import (
    colorbar,
    colorize,
    figure,
    lookup_table,
    resolve_clim,
    symmetric_clim,
)

# the module itself, for its private jitted core
colors_mod = importlib.import_module("topojax.colors")


def matplotlib_rgba(values, lo, hi, cmap="bwr"):
    return matplotlib.colormaps[cmap](Normalize(lo, hi)(values), bytes=True)


def off_bin_edges(values, lo, hi):
    scaled = (np.asarray(values, np.float64) - lo) / (hi - lo) * 256
    return np.abs(scaled - np.round(scaled)) > 1e-3


def test_matches_matplotlib_with_symmetric_limits_shared_over_groups():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3, 16, 16)).astype(np.float32)
    images[1] *= 3.0  # group 1 sets the shared limit
    rgba = np.asarray(colorize(images))
    assert rgba.shape == (3, 16, 16, 4) and rgba.dtype == np.uint8
    limit = np.abs(images).max()
    assert symmetric_clim(images) == pytest.approx(limit)
    expected = matplotlib_rgba(images, -limit, limit)
    keep = off_bin_edges(images, -limit, limit)
    assert keep.mean() > 0.99
    np.testing.assert_array_equal(rgba[keep], expected[keep])
    # a group coloured alone with the shared limit gives the same bytes
    np.testing.assert_array_equal(np.asarray(colorize(images[0], clim=limit)), rgba[0])
    # but not with its own (smaller) limit
    assert not np.array_equal(np.asarray(colorize(images[0])), rgba[0])


def test_zero_is_white_and_limits_take_end_colours():
    lut = lookup_table("bwr")
    values = np.array([[-5.0, -1.0, 0.0, 1.0, 5.0]], np.float32)
    rgba = np.asarray(colorize(values, clim=1.0))
    np.testing.assert_array_equal(rgba[0, 0], lut[0])
    np.testing.assert_array_equal(rgba[0, 1], lut[0])
    np.testing.assert_array_equal(rgba[0, 2], lut[128])
    assert rgba[0, 2, :3].min() >= 250  # bwr centre is (near) white
    np.testing.assert_array_equal(rgba[0, 3], lut[255])
    np.testing.assert_array_equal(rgba[0, 4], lut[255])


def test_clim_forms():
    values = np.linspace(-2, 2, 9, dtype=np.float32)[None]
    assert resolve_clim(values) == (-2.0, 2.0)
    assert resolve_clim(values, 0.5) == (-0.5, 0.5)
    assert resolve_clim(values, (0.0, 3.0)) == (0.0, 3.0)
    np.testing.assert_array_equal(
        np.asarray(colorize(values, clim=(0.0, 3.0))),
        matplotlib_rgba(values, 0.0, 3.0),
    )
    assert resolve_clim(np.zeros((2, 2))) == (-1.0, 1.0)
    assert resolve_clim(np.full((2, 2), np.nan)) == (-1.0, 1.0)
    for bad in (0.0, -1.0, np.inf, (1.0, 1.0), (2.0, 1.0), (0.0, 1.0, 2.0)):
        with pytest.raises(ValueError, match="clim"):
            colorize(values, clim=bad)


def test_nan_is_transparent_white():
    values = np.array([[np.nan, 0.5], [-0.5, np.nan]], np.float32)
    rgba = np.asarray(colorize(values))
    np.testing.assert_array_equal(rgba[0, 0], colors_mod.NAN_RGBA)
    np.testing.assert_array_equal(rgba[1, 1], colors_mod.NAN_RGBA)
    np.testing.assert_array_equal(rgba[..., 3], [[0, 255], [255, 0]])


def test_same_values_same_bytes_and_no_recompile():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((2, 8, 8)).astype(np.float32)
    first = np.asarray(colorize(images, clim=2.0)).tobytes()
    before = colors_mod._colorize._cache_size()
    second = np.asarray(colorize(images.copy(), clim=2.0)).tobytes()
    colorize(rng.standard_normal((2, 8, 8)).astype(np.float32), clim=(0.0, 1.0))
    colorize(images, cmap="viridis")
    assert first == second
    assert colors_mod._colorize._cache_size() == before


def test_custom_colormap_object_and_unknown_name():
    cmap = matplotlib.colormaps["viridis"]
    np.testing.assert_array_equal(lookup_table(cmap), lookup_table("viridis"))
    with pytest.raises(ValueError, match="unknown colour map 'nope'"):
        colorize(np.zeros((2, 2)), cmap="nope")


def test_colorbar_orientation():
    lut = lookup_table("bwr")
    vertical = colorbar("bwr", 1.0, height=256, width=3)
    assert vertical.shape == (256, 3, 4) and vertical.dtype == np.uint8
    np.testing.assert_array_equal(vertical[0, 0], lut[255])  # top = high
    np.testing.assert_array_equal(vertical[-1, 0], lut[0])
    np.testing.assert_array_equal(vertical[:, 0], vertical[:, 2])
    horizontal = colorbar("bwr", (0.0, 2.0), height=2, width=256,
                          orientation="horizontal")  # fmt: skip
    np.testing.assert_array_equal(horizontal[0], lut)  # left = low, one bin each
    with pytest.raises(ValueError, match="orientation"):
        colorbar(orientation="diagonal")
    with pytest.raises(ValueError, match="clim"):
        colorbar(clim=None)


def test_figure_writes_png(tmp_path):
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:16, 0:16] / 16.0
    image = np.sin(4 * xx) * np.cos(3 * yy)
    image[:3, :3] = np.nan
    path = figure(image, tmp_path / "map.png", coords=rng.random((10, 2)),
                  title="digit 3", show_colorbar=True, dpi=50)  # fmt: skip
    with Image.open(path) as decoded:
        assert decoded.size == (100, 100)
        pixels = np.asarray(decoded.convert("RGB")).astype(int)
    assert (pixels[..., 0] > pixels[..., 2] + 100).any()  # red areas
    assert (pixels[..., 2] > pixels[..., 0] + 100).any()  # blue areas
