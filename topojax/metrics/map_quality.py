"""Quality of rendered maps: the paper's blur/resize errors, AUC, and blobs.

The paper (Krug et al. 2023, evaluation code) measures how much a rendered map
changes when it is blurred or down-and-up-sampled: a smooth, "topographic" map
changes little, a random layout's speckled map changes a lot. Smaller is
better. We follow its protocol with two deliberate changes:

* errors are computed in float (the reference code subtracted ``uint8`` arrays,
  so its squared differences wrapped modulo 256);
* the strengths are given relative to the image size, so maps of any
  resolution are comparable. The reference rasterised each map at about
  300 x 300 px and used, for ``r = 0 .. 9``, Gaussian blur radius ``2r + 2`` px
  and down-sampling to ``(55 - 5r)`` px; here, for an image of side ``S`` px
  (``S = sqrt(H * W)`` for the blur, each axis's own length for resizing):

  - blur: Gaussian of standard deviation ``sigma_r = (2r + 2) / 300 * S`` px
    (PIL's ``GaussianBlur(radius)`` takes the standard deviation), kernel
    truncated at ``4 sigma``, edges extended (clamped) like PIL;
  - resize: down to ``max(1, round((55 - 5r) / 300 * S))`` px per axis and back
    to ``S`` with the weights of ``jax.image.resize`` (bicubic by default, as
    PIL's default, antialiased when down-sampling; `resize_matrix`).

Both alterations are linear and separable, so each is a stack of ``(S, S)``
matrices ``A_r`` per axis; the altered image is ``A_r X A_r^T`` per channel.

**What is compared.** Like the paper, the coloured image: `to_rgb` colours the
value maps with the layer's colour map and shared limits and puts NaN pixels
(outside the hull) on white, giving RGB in ``[0, 1]``. ``error_r = mean over
pixels and channels of (X - A_r(X))^2``, averaged over the groups; on the 0..255
scale of the paper multiply by ``255^2``. `blur_curve` and `resize_curve` also
accept any finite float images ``(G, H, W)`` or ``(G, H, W, C)``.

**Summary.** ``auc(curve) = sum_r (curve[r] + curve[r + 1]) / 2``, the
trapezoid rule with unit spacing over ``r = 0 .. 9`` (``sklearn.metrics.auc``
of the paper).

**Components** (later metric of the authors' code): the number and size of
connected strongly-positive (red) and strongly-negative (blue) regions; see
`components`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from topojax.colors import colorize

N_STRENGTHS = 10
# Reference image side (px) the paper's radii and sizes refer to.
REFERENCE_SIZE = 300.0


def blur_sigmas(size: float, n_strengths: int = N_STRENGTHS) -> np.ndarray:
    """Blur standard deviations in pixels for an image of side ``size``.

    Returns:
        ``(n_strengths,)`` float64: ``(2r + 2) / 300 * size`` for ``r = 0..n-1``.
    """
    return (2.0 * np.arange(n_strengths) + 2.0) / REFERENCE_SIZE * size


def resize_sizes(size: int, n_strengths: int = N_STRENGTHS) -> tuple[int, ...]:
    """Intermediate sizes of the resize test for an axis of ``size`` pixels.

    Returns:
        ``max(1, round((55 - 5r) / 300 * size))`` for ``r = 0..n-1``.
    """
    return tuple(
        max(1, int(round((55.0 - 5.0 * r) / REFERENCE_SIZE * size)))
        for r in range(n_strengths)
    )


@functools.lru_cache(maxsize=32)
def _blur_operators(size: int, sigmas: tuple[float, ...]) -> np.ndarray:
    """``(S, size, size)`` Gaussian blur matrices with clamped edges."""
    operators = np.zeros((len(sigmas), size, size), np.float64)
    rows = np.arange(size)
    for s, sigma in enumerate(sigmas):
        reach = max(1, math.ceil(4.0 * sigma))
        offsets = np.arange(-reach, reach + 1)
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        kernel /= kernel.sum()
        for offset, weight in zip(offsets, kernel, strict=True):
            np.add.at(operators[s], (rows, np.clip(rows + offset, 0, size - 1)), weight)
    return operators.astype(np.float32)


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    # Keys (1981) cubic convolution, a = -0.5: PIL's bicubic, jax's "cubic".
    out = ((1.5 * x - 2.5) * x) * x + 1.0
    out = np.where(x >= 1.0, ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0, out)
    return np.where(x >= 2.0, 0.0, out)


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - np.abs(x))


_RESIZE_KERNELS = {"cubic": _keys_cubic, "linear": _triangle}
RESIZE_METHODS = tuple(_RESIZE_KERNELS)


def resize_matrix(in_size: int, out_size: int, method: str = "cubic") -> np.ndarray:
    """The linear map of ``jax.image.resize(x, (out_size,), method)`` on a vector.

    The same weights as ``jax.image.resize`` (antialias=True: when shrinking,
    the kernel is widened by ``in_size / out_size``), computed in NumPy so that
    building the operators costs no compilation.

    Returns:
        ``(out_size, in_size)`` float64, rows summing to 1.
    """
    kernel = _RESIZE_KERNELS[method]
    inv_scale = in_size / out_size
    kernel_scale = max(inv_scale, 1.0)
    sample = (np.arange(out_size) + 0.5) * inv_scale - 0.5
    weights = kernel(
        np.abs(sample[:, None] - np.arange(in_size)[None, :]) / kernel_scale
    )
    total = weights.sum(axis=1, keepdims=True)
    return np.where(
        np.abs(total) > 1000.0 * np.finfo(np.float32).eps, weights / total, 0.0
    )


@functools.lru_cache(maxsize=32)
def _resize_operators(size: int, sizes: tuple[int, ...], method: str) -> np.ndarray:
    """``(S, size, size)`` matrices of down-to-``sizes[r]``-and-back resizing."""
    operators = [
        resize_matrix(small, size, method) @ resize_matrix(size, small, method)
        for small in sizes
    ]
    return np.stack(operators).astype(np.float32)


@jax.jit
def _operator_errors(images, rows_ops, cols_ops):
    """Per-image MSE between ``X`` and ``A_r X B_r^T``: (G,H,W,C) -> (G, S)."""

    def one_image(image):
        def one_strength(rows_op, cols_op):
            altered = jnp.einsum("ih,hwc->iwc", rows_op, image)
            altered = jnp.einsum("jw,iwc->ijc", cols_op, altered)
            return jnp.mean((altered - image) ** 2)

        return jax.vmap(one_strength)(rows_ops, cols_ops)

    return jax.lax.map(one_image, images)


def _check_images(images) -> jax.Array:
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or min(array.shape) < 1:
        raise ValueError(
            "images must be (n_groups, H, W) or (n_groups, H, W, C); "
            f"got shape {np.asarray(images).shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"images must be real numbers; got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(
            "images contain NaN/Inf; colour value maps with to_rgb(images, "
            "clim=...) first (NaN becomes the white background, as in the paper)"
        )
    return jnp.asarray(array, jnp.float32)


def _check_strengths(n_strengths) -> int:
    if isinstance(n_strengths, bool) or not isinstance(n_strengths, int):
        raise ValueError(f"n_strengths must be an int; got {n_strengths!r}")
    if not 1 <= n_strengths <= 11:
        raise ValueError(
            f"n_strengths must be 1..11 (sizes (55 - 5r)/300 stay > 0); "
            f"got {n_strengths}"
        )
    return n_strengths


def _reduce(errors: jax.Array, per_group: bool) -> np.ndarray:
    errors = np.asarray(errors, np.float64)
    return errors if per_group else errors.mean(axis=0)


def to_rgb(images, *, cmap="bwr", clim=None) -> jax.Array:
    """Coloured maps as the paper evaluated them: RGB in ``[0, 1]``, NaN white.

    Args:
        images: ``(n_groups, R, R)`` value maps from `topojax.render.render`.
        cmap: colour map (default ``"bwr"``).
        clim: as in `topojax.colors.colorize`; None = symmetric over all the
            given groups (the layer's shared scale).

    Returns:
        ``(n_groups, R, R, 3)`` float32.
    """
    rgba = colorize(images, cmap=cmap, clim=clim)
    return rgba[..., :3].astype(jnp.float32) / 255.0


def blur_curve(
    images, *, n_strengths: int = N_STRENGTHS, per_group: bool = False
) -> np.ndarray:
    """Mean squared error between each image and its Gaussian-blurred copies.

    ``error_r = mean((X - blur_{sigma_r}(X))^2)`` over pixels and channels, with
    ``sigma_r = (2r + 2) / 300 * sqrt(H * W)`` px (module docstring).

    Args:
        images: ``(n_groups, H, W)`` or ``(n_groups, H, W, C)`` finite floats,
            e.g. `to_rgb` output.
        n_strengths: number of blur strengths ``r = 0 .. n-1`` (paper: 10).
        per_group: return ``(n_groups, n_strengths)`` instead of the mean.

    Returns:
        ``(n_strengths,)`` float64 curve, averaged over groups.
    """
    array = _check_images(images)
    n_strengths = _check_strengths(n_strengths)
    height, width = array.shape[1:3]
    sigmas = tuple(
        float(s) for s in blur_sigmas(math.sqrt(height * width), n_strengths)
    )
    rows_ops = _blur_operators(height, sigmas)
    cols_ops = rows_ops if width == height else _blur_operators(width, sigmas)
    return _reduce(_operator_errors(array, rows_ops, cols_ops), per_group)


def resize_curve(
    images,
    *,
    n_strengths: int = N_STRENGTHS,
    method: str = "cubic",
    per_group: bool = False,
) -> np.ndarray:
    """Mean squared error between each image and its down-and-up-sampled copies.

    ``error_r = mean((X - up(down(X, s_r)))^2)`` with ``s_r = round((55 - 5r) /
    300 * side)`` px per axis, resized with ``jax.image.resize``.

    Args:
        images: ``(n_groups, H, W)`` or ``(n_groups, H, W, C)`` finite floats.
        n_strengths: number of sizes ``r = 0 .. n-1`` (paper: 10, at most 11).
        method: ``"cubic"`` (PIL's default bicubic) or ``"linear"``.
        per_group: return ``(n_groups, n_strengths)`` instead of the mean.

    Returns:
        ``(n_strengths,)`` float64 curve, averaged over groups.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(
            f"unknown resize method {method!r}; expected one of {list(RESIZE_METHODS)}"
        )
    array = _check_images(images)
    n_strengths = _check_strengths(n_strengths)
    height, width = array.shape[1:3]
    rows_ops = _resize_operators(height, resize_sizes(height, n_strengths), method)
    cols_ops = (
        rows_ops
        if width == height
        else _resize_operators(width, resize_sizes(width, n_strengths), method)
    )
    return _reduce(_operator_errors(array, rows_ops, cols_ops), per_group)


def auc(curve) -> np.ndarray:
    """Area under a curve by the trapezoid rule with unit spacing.

    ``auc = sum_{r=0}^{n-2} (curve[r] + curve[r + 1]) / 2`` along the last axis
    (``sklearn.metrics.auc(range(n), curve)``).

    Args:
        curve: ``(..., n)`` values, ``n >= 1``.

    Returns:
        ``(...)`` float64 areas (a 0-d array for one curve).
    """
    values = np.asarray(curve, np.float64)
    if values.ndim < 1 or values.shape[-1] < 1:
        raise ValueError(f"curve must be (..., n) with n >= 1; got {values.shape}")
    return ((values[..., 1:] + values[..., :-1]) / 2.0).sum(axis=-1)


def evaluate_maps(
    images, *, cmap="bwr", clim=None, n_strengths: int = N_STRENGTHS
) -> dict[str, np.ndarray]:
    """The paper's evaluation of one layer's maps in one call.

    Colours the maps with `to_rgb` (shared symmetric limits by default, NaN on
    white), then computes both curves and their AUCs.

    Args:
        images: ``(n_groups, R, R)`` value maps (NaN outside the hull).
        cmap: colour map.
        clim: colour limits (see `topojax.colors.colorize`).
        n_strengths: number of strengths (paper: 10).

    Returns:
        ``{"blur_curve": (n,), "blur_auc": (), "resize_curve": (n,),
        "resize_auc": ()}`` float64 arrays; errors on the ``[0, 1]`` RGB scale.
    """
    rgb = to_rgb(images, cmap=cmap, clim=clim)
    blur = blur_curve(rgb, n_strengths=n_strengths)
    resize = resize_curve(rgb, n_strengths=n_strengths)
    return {
        "blur_curve": blur,
        "blur_auc": auc(blur),
        "resize_curve": resize,
        "resize_auc": auc(resize),
    }


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["n_positive", "n_negative", "mean_area"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class ComponentStats:
    """Connected strong regions of maps, per map.

    Attributes:
        n_positive: ``(...)`` int, number of red (``v >= t * clim``) regions.
        n_negative: ``(...)`` int, number of blue (``v <= -t * clim``) regions.
        mean_area: ``(...)`` float, mean area of all counted regions as a
            fraction of the image's pixels (0 where there is none).
    """

    n_positive: np.ndarray
    n_negative: np.ndarray
    mean_area: np.ndarray

    @property
    def n_components(self) -> np.ndarray:
        """Red plus blue regions per map."""
        return self.n_positive + self.n_negative


_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _regions(mask: np.ndarray, min_area: int) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if count == 0:
        return np.zeros(0, np.int64)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return areas[areas >= min_area]


def components(
    images,
    *,
    clim: float | None = None,
    threshold: float = 0.1,
    min_area: int | None = None,
) -> ComponentStats:
    """Count connected strongly-positive and strongly-negative regions.

    After the authors' later ``components`` metric, which binarised the red and
    blue channels of the 100 x 100 ``bwr`` image at level 230 (roughly
    ``|v| >= 0.1 * clim``), labelled them with 8-connectivity and kept regions
    of at least 10 px. Here, on the value maps directly:

    * red regions: 8-connected components of ``v >= threshold * clim``;
      blue regions: of ``v <= -threshold * clim`` (NaN pixels belong to none);
    * only regions of at least ``min_area`` pixels count; default
      ``ceil(10 / 100^2 * H * W)`` (10 px at 100 x 100, 17 px at 128 x 128);
    * the background is simply the unmarked pixels (the reference subtracted
      "the label of pixel [0, 0]").

    Fewer, larger regions suggest a smoother map (the authors' interpretation).

    Args:
        images: ``(H, W)`` or ``(..., H, W)`` value maps, NaN where not drawn.
        clim: the colour limit ``a`` of the symmetric scale ``(-a, a)``; None =
            ``max |v|`` over all given maps (the layer's shared scale).
        threshold: fraction of ``clim`` that counts as strong, in ``(0, 1]``.
        min_area: smallest region counted, in pixels.

    Returns:
        `ComponentStats` with arrays of shape ``(...)`` (the leading axes of
        ``images``; ``()`` for one map). Average them over groups as the
        paper did, e.g. ``stats.n_components.mean()``.
    """
    values = np.asarray(images, np.float64)
    if values.ndim < 2 or min(values.shape[-2:]) < 1:
        raise ValueError(f"images must be (..., H, W); got shape {values.shape}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold!r}")
    height, width = values.shape[-2:]
    if min_area is None:
        min_area = math.ceil(10.0 / 100.0**2 * height * width)
    if isinstance(min_area, bool) or not isinstance(min_area, int) or min_area < 1:
        raise ValueError(f"min_area must be a positive int; got {min_area!r}")
    if clim is None:
        finite = np.abs(values[np.isfinite(values)])
        clim = float(finite.max()) if finite.size else 0.0
    elif not (0 < clim < math.inf):
        raise ValueError(f"clim must be a positive number or None; got {clim!r}")
    leading = values.shape[:-2]
    flat = values.reshape(-1, height, width)
    n_positive = np.zeros(len(flat), np.int64)
    n_negative = np.zeros(len(flat), np.int64)
    mean_area = np.zeros(len(flat), np.float64)
    if clim > 0:
        level = threshold * clim
        with np.errstate(invalid="ignore"):
            for g, image in enumerate(flat):
                positive = _regions(image >= level, min_area)
                negative = _regions(image <= -level, min_area)
                n_positive[g], n_negative[g] = len(positive), len(negative)
                areas = np.concatenate([positive, negative])
                if areas.size:
                    mean_area[g] = areas.mean() / (height * width)
    return ComponentStats(
        n_positive=n_positive.reshape(leading),
        n_negative=n_negative.reshape(leading),
        mean_area=mean_area.reshape(leading),
    )
