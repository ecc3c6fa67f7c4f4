import io
import struct

import numpy as np
import pytest
from PIL import Image

from topojax.png import encode_png, write_pngs


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def chunk_types(data: bytes) -> list[bytes]:
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return types


@pytest.mark.parametrize("shape", [(7, 5, 4), (7, 5, 3), (7, 5), (1, 1, 4)])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_round_trip_through_pillow(shape, level):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(
        decode(encode_png(image, compress_level=level)), image
    )


def test_deterministic_without_metadata():
    image = np.random.default_rng(1).integers(0, 256, (9, 11, 4), dtype=np.uint8)
    first = encode_png(image)
    assert first == encode_png(image.copy())
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    assert chunk_types(first) == [b"IHDR", b"IDAT", b"IEND"]


def test_write_pngs_matches_encode(tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (5, 6, 6, 4), dtype=np.uint8)
    paths = [tmp_path / f"map_{g}.png" for g in range(5)]
    written = write_pngs(paths, images, max_workers=2)
    assert written == paths
    for path, image in zip(paths, images, strict=True):
        assert path.read_bytes() == encode_png(image)
        np.testing.assert_array_equal(decode(path.read_bytes()), image)


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="RGBA"):
        encode_png(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="compress_level"):
        encode_png(np.zeros((4, 4, 4), np.uint8), compress_level=10)
    with pytest.raises(ValueError, match="2 paths for 3 images"):
        write_pngs(["a.png", "b.png"], np.zeros((3, 4, 4, 4), np.uint8))
