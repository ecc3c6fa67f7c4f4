import json
import re

import numpy as np
import pytest
from PIL import Image

from topojax.digits import DIGIT_NAMES

pytestmark = pytest.mark.xdist_group("demo")


def test_demo_gallery_has_one_map_per_layer_and_group(demo_gallery):
    root = demo_gallery.parent
    manifest = json.loads((root / "manifest.json").read_text())
    files = manifest["files"]
    for model, layers in (
        ("digits-mlp", ("hidden1", "hidden2")),
        ("digits-cnn", ("conv1", "conv2")),
    ):
        for layer in layers:
            maps = sorted(
                path
                for path in files
                if path.startswith(f"{model}/{layer}/maps/pca/linear/classes/")
            )
            assert len(maps) == len(DIGIT_NAMES), (model, layer, maps)
            page = (root / model / layer / "index.html").read_text()
            for path in maps:
                relative = path.removeprefix(f"{model}/{layer}/")
                assert relative in page, f"{relative} not referenced by {layer} page"
                image = np.asarray(Image.open(root / path))
                assert image.shape[-1] == 4 and image.shape[0] >= 64
                assert image[..., 3].max() == 255  # something is drawn


def test_demo_index_links_every_layer_page(demo_gallery):
    index = demo_gallery.read_text()
    links = set(re.findall(r'href="([^"]+)"', index))
    for page in (
        "digits-mlp/hidden1/index.html",
        "digits-mlp/hidden2/index.html",
        "digits-cnn/conv1/index.html",
        "digits-cnn/conv2/index.html",
    ):
        assert page in links, page
        assert (demo_gallery.parent / page).is_file()


def test_demo_manifest_checksums_match(demo_gallery):
    import hashlib

    root = demo_gallery.parent
    manifest = json.loads((root / "manifest.json").read_text())
    on_disk = {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and path.name != "manifest.json"
    }
    assert on_disk == set(manifest["files"])
    for path, digest in manifest["files"].items():
        assert hashlib.sha256((root / path).read_bytes()).hexdigest() == digest
