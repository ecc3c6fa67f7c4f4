"""Minimal, fast, deterministic PNG encoding (zlib + struct, no matplotlib).

Every image is written as 8-bit RGBA (or RGB / greyscale), non-interlaced,
filter type 0 on every row, one IDAT chunk, and no other chunks: the bytes
depend only on the pixels and ``compress_level`` (no timestamps, no software
tag). ``zlib`` releases the GIL while compressing, so `write_pngs` encodes many
images in parallel with a thread pool.

``compress_level=1`` is the default: on smooth 128 x 128 maps it is ~6x faster
than level 6 for files ~10 % larger.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type by number of channels: greyscale, RGB, RGBA.
_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _check_image(image) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8; got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in _COLOUR_TYPES:
        raise ValueError(
            "image must be (H, W, 4) RGBA, (H, W, 3) RGB or (H, W) grey; "
            f"got shape {np.asarray(image).shape}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"image must be at least 1 x 1; got shape {array.shape}")
    return array


def _check_level(compress_level) -> int:
    if isinstance(compress_level, bool) or compress_level not in range(10):
        raise ValueError(f"compress_level must be an int 0..9; got {compress_level!r}")
    return int(compress_level)


def _encode(array: np.ndarray, level: int) -> bytes:
    height, width, channels = array.shape
    rows = np.empty((height, 1 + width * channels), dtype=np.uint8)
    rows[:, 0] = 0  # filter type "None"
    rows[:, 1:] = array.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)),
            _chunk(b"IEND", b""),
        )
    )


def encode_png(image, *, compress_level: int = 1) -> bytes:
    """Encode one image as PNG bytes.

    Args:
        image: ``(H, W, 4)`` uint8 RGBA (also ``(H, W, 3)`` RGB or ``(H, W)``
            grey), e.g. one map of `topojax.colors.colorize`.
        compress_level: zlib level 0 (none) .. 9 (smallest).

    Returns:
        The PNG file contents; identical pixels give identical bytes.

    Raises:
        ValueError: wrong dtype/shape or compress level.
    """
    return _encode(_check_image(image), _check_level(compress_level))


def write_pngs(
    paths: Sequence[str | os.PathLike],
    images,
    *,
    compress_level: int = 1,
    max_workers: int | None = None,
) -> list[Path]:
    """Encode and write many PNGs in parallel.

    Args:
        paths: one output path per image (parent folders must exist).
        images: ``(n_images, H, W, 4)`` uint8 array (a jax or NumPy array), or a
            sequence of ``(H, W, C)`` uint8 images.
        compress_level: zlib level 0..9.
        max_workers: threads; None = the number of CPUs.

    Returns:
        The paths written, as `Path` objects.

    Raises:
        ValueError: mismatched counts, bad images or compress level (all
            images are checked before anything is written).
    """
    level = _check_level(compress_level)
    if hasattr(images, "shape"):
        images = np.asarray(images)
    arrays = [_check_image(image) for image in images]
    paths = [Path(path) for path in paths]
    if len(paths) != len(arrays):
        raise ValueError(f"got {len(paths)} paths for {len(arrays)} images")

    def write(item: tuple[Path, np.ndarray]) -> Path:
        path, array = item
        path.write_bytes(_encode(array, level))
        return path

    workers = max_workers or os.cpu_count() or 1
    if workers == 1 or len(arrays) < 2:
        return [write(item) for item in zip(paths, arrays, strict=True)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(write, zip(paths, arrays, strict=True)))
