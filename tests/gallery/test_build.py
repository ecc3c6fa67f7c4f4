import hashlib
import html.parser
import json
import os
import re

import numpy as np
import pytest

import topojax.gallery.build as build_module
from topojax.gallery import (
    Analysis,
    GroupSet,
    LayerView,
    build_gallery,
    group_order,
    is_gallery,
)
from topojax.gallery.assets import rle_encode
from topojax.gallery.build import GENERATOR, build_date
from topojax.gallery.site import BuildOptions, describe_site, format_number
from topojax.render import nearest_neuron

from .conftest import XSS_IMG, XSS_SCRIPT

EPOCH = "1700000000"  # 2023-11-14 22:13 UTC
RESOLUTION = 24
PATH_PART = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.(html|js|css|png|json))?$")


def build(analyses, out_dir, **kwargs):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", EPOCH)
        return build_gallery(analyses, out_dir, resolution=RESOLUTION, **kwargs)


def tree(root):
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory, analysis, hostile_analysis):
    out = tmp_path_factory.mktemp("site") / "gallery"
    index = build([hostile_analysis, analysis], out)
    assert index == out / "index.html"
    return out, tree(out)


class Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(content):
    parser = Tags()
    parser.feed(content.decode("utf-8"))
    return parser


def test_site_has_every_page_and_only_safe_paths(site):
    out, files = site
    pages = [p for p in files if p.endswith(".html")]
    # 2 models x 2 layers x (layer + compare) + 2 training pages + index.
    assert len(pages) == 2 * 2 * 2 + 2 + 1
    assert {
        "index.html",
        "manifest.json",
        "assets/topojax.css",
        "assets/topojax.js",
    } <= set(files)
    model_dirs = {p.split("/")[0] for p in files if "/" in p} - {"assets"}
    # The hostile names are sanitised; its two layer names sanitise alike.
    assert model_dirs == {"etc-b-model-b", "synthetic-model"}
    layer_dirs = {p.split("/")[1] for p in files if p.startswith("etc-b-model-b/")}
    assert layer_dirs == {"layer", "layer-2", "inputs"}
    for path in files:
        assert all(PATH_PART.match(part) for part in path.split("/")), path
        assert (out / path).resolve().is_relative_to(out.resolve())


def test_manifest_lists_every_file_with_its_checksum(site):
    out, files = site
    manifest = json.loads(files["manifest.json"])
    assert manifest["generator"] == GENERATOR and is_gallery(out)
    listed = manifest["files"]
    assert set(listed) == set(files) - {"manifest.json"}
    for path, digest in listed.items():
        assert hashlib.sha256(files[path]).hexdigest() == digest
    assert {"topojax", "jax", "flax"} <= set(manifest["versions"])
    assert manifest["versions"]["topojax"] != "unknown"
    assert manifest["parameters"] == {
        "resolution": RESOLUTION,
        "render_methods": ["linear", "nearest"],
        "shape": "square",
        "title": "topojax gallery",
    }
    assert manifest["build_date"] == "2023-11-14 22:13 UTC"
    assert [m["name"] for m in manifest["models"]] == [
        "../../etc/<b>model</b>",
        "synthetic model",
    ]
    assert manifest["models"][1]["params"] == {"seed": 0, "n_neurons": 20}


def test_build_is_byte_identical(site, tmp_path, analysis, hostile_analysis):
    _, files = site
    build([hostile_analysis, analysis], tmp_path / "again")
    assert tree(tmp_path / "again") == files


def test_build_date_comes_from_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert build_date().isoformat() == "1970-01-02T00:00:00+00:00"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH"):
        build_date()
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert build_date().year >= 2024


def test_user_strings_are_escaped_everywhere(site):
    _, files = site
    for path, content in files.items():
        if path.endswith((".html", ".js")):
            text = content.decode("utf-8")
            assert "<img src=x" not in text, path
            assert "<script>alert" not in text, path
            assert "<b>model" not in text, path
    layer_page = files["etc-b-model-b/layer/index.html"].decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in layer_page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in layer_page
    parsed = parse(files["etc-b-model-b/layer/index.html"])
    text = "".join(parsed.text)
    assert XSS_IMG in text and XSS_SCRIPT in text
    # Exactly the page's own scripts, no injected ones.
    scripts = [attrs.get("src") for tag, attrs in parsed.tags if tag == "script"]
    assert scripts == ["data.js", "../../assets/topojax.js"]
    data = files["etc-b-model-b/layer/data.js"].decode()
    assert not set(data) & set("<>&")
    payload = json.loads(data.split(" = ", 1)[1].rstrip(";\n"))
    assert payload["sets"]["classes"]["groups"] == ["alpha", XSS_IMG, XSS_SCRIPT]
    assert payload["model"] == "../../etc/<b>model</b>"


def test_every_link_is_relative_and_local(site):
    out, files = site
    for path, content in files.items():
        if not path.endswith(".html"):
            continue
        for _, attrs in parse(content).tags:
            for name in ("src", "href"):
                if name not in attrs:
                    continue
                target = attrs[name].split("#")[0]
                assert "://" not in attrs[name] and not attrs[name].startswith("/"), (
                    path,
                    attrs,
                )
                if target:
                    resolved = (out / path).parent / target
                    assert resolved.is_file(), (path, attrs[name])
    for name in ("assets/topojax.css", "assets/topojax.js"):
        text = files[name].decode()
        assert "url(" not in text and "@import" not in text and "fetch(" not in text
        assert re.findall(r"https?://[^\s\"']+", text) in (
            [],
            ["http://www.w3.org/2000/svg"],
        )


def test_every_image_has_alt_text_and_size(site):
    _, files = site
    n_images = 0
    for path, content in files.items():
        if path.endswith(".html"):
            for tag, attrs in parse(content).tags:
                if tag == "img":
                    n_images += 1
                    assert attrs.get("alt"), (path, attrs)
                    assert attrs.get("width") and attrs.get("height")
    assert n_images > 100


def test_layer_page_orders_groups_and_shares_colour_limits(site, hostile_analysis):
    _, files = site
    page = files["etc-b-model-b/layer/index.html"].decode()
    group_set = hostile_analysis.layers[0].group_sets[0]
    order = group_order(group_set.values)
    section = page.split('id="classes--random--linear"')[1].split("</section>")[0]
    groups = [int(g) for g in re.findall(r'data-group="(\d+)"', section)]
    assert groups == list(order)
    limit = float(np.abs(group_set.values).max())
    assert f">{format_number(limit)}<" in page and f">{format_number(-limit)}<" in page
    counts = re.findall(r'class="count">n = (\d+)<', section)
    assert [int(c) for c in counts] == [int(group_set.counts[g]) for g in order]
    # One variant per (method, style) and the switch offers exactly those.
    assert len(re.findall(r'class="variant"', page)) == 2 * 2
    assert re.findall(r'name="method" value="([^"]+)"', page) == [
        "random",
        "jittered-grid",
    ]
    assert re.findall(r'name="style" value="([^"]+)"', page) == ["linear", "nearest"]
    assert "median nn distance" in page


def test_data_script_holds_the_renderers_neuron_index(site, hostile_analysis):
    _, files = site
    data = files["etc-b-model-b/layer/data.js"].decode()
    payload = json.loads(data.split(" = ", 1)[1].rstrip(";\n"))
    layer = hostile_analysis.layers[0]
    for method_id, method in (("random", "random"), ("jittered-grid", "jittered grid")):
        for style in ("linear", "nearest"):
            expected = nearest_neuron(
                layer.layouts[method],
                resolution=RESOLUTION,
                shape="square",
                method=style,
            )
            entry = payload["nearest"][method_id]
            index = decode(entry["index"], expected.shape)
            drawn = decode(entry["drawn"][style], expected.shape) == 0
            np.testing.assert_array_equal(np.where(drawn, index, -1), expected)
    assert payload["resolution"] == RESOLUTION
    assert payload["top_inputs"] == layer.top_inputs.tolist()
    values = np.asarray(payload["sets"]["classes"]["values"])
    np.testing.assert_allclose(values, layer.group_sets[0].values, rtol=5e-3)
    assert len(payload["training"]["labels"]) == layer.training.n_frames


def decode(runs, shape):
    """The page script's run-length decoding, in NumPy."""
    return np.repeat(np.array(runs[0::2]) - 1, runs[1::2]).reshape(shape)


def test_rle_round_trip():
    indices = np.array([[-1, -1, 0], [0, 3, 3]])
    runs = rle_encode(indices)
    assert runs == [0, 2, 1, 2, 4, 2]
    np.testing.assert_array_equal(decode(runs, indices.shape), indices)


def test_thumbnails_exist_for_every_top_input(site, analysis):
    _, files = site
    used = set(np.unique(analysis.layers[0].top_inputs)) | set(
        np.unique(analysis.layers[1].top_inputs)
    )
    thumbs = {p for p in files if p.startswith("synthetic-model/inputs/")}
    assert thumbs == {f"synthetic-model/inputs/{i}.png" for i in used}
    assert files[f"synthetic-model/inputs/{min(used)}.png"].startswith(b"\x89PNG")


def test_training_page_lists_every_frame(site):
    _, files = site
    page = files["synthetic-model/layer1/training.html"].decode()
    assert re.findall(r'class="frame-title">([^<]+)<', page) == [
        "epoch 1",
        "epoch 2",
        "epoch 3",
    ]
    assert 'type="range"' in page and 'max="2"' in page
    assert "training.html" not in files["synthetic-model/layer2/index.html"].decode()


@pytest.fixture
def quick(monkeypatch):
    """Skip rendering: the directory handling does not depend on the files."""
    monkeypatch.setattr(
        build_module,
        "_site_files",
        lambda site, analyses, *_: {"index.html": b"<p>x</p>"},
    )


def test_existing_directories(tmp_path, analysis, quick):
    target = tmp_path / "out"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a topojax gallery"):
        build([analysis], target)
    with pytest.raises(FileExistsError, match="not a topojax gallery"):
        build([analysis], target, keep_unknown=True)
    assert (target / "precious.txt").read_text() == "keep me"
    build([analysis], target, force=True)
    assert is_gallery(target) and not (target / "precious.txt").exists()
    # A gallery holding only what the last build wrote is replaced without flags.
    build([analysis], target)
    assert sorted(tree(target)) == ["index.html", "manifest.json"]
    # A file the last build did not write is never dropped silently.
    (target / "stale.html").write_text("old")
    with pytest.raises(FileExistsError, match=r"stale\.html.*--keep-unknown"):
        build([analysis], target)
    assert (target / "stale.html").read_text() == "old"
    build([analysis], target, force=True)
    assert sorted(tree(target)) == ["index.html", "manifest.json"]
    # An empty directory is filled; a file is only replaced with force.
    (tmp_path / "empty").mkdir()
    build([analysis], tmp_path / "empty")
    assert is_gallery(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        build([analysis], tmp_path / "file")
    build([analysis], tmp_path / "file", force=True)
    assert is_gallery(tmp_path / "file")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_foreign_manifest_is_not_a_gallery(tmp_path, analysis, quick):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text('{"generator": "other"}')
    with pytest.raises(FileExistsError):
        build([analysis], tmp_path / "out")


def test_interrupted_build_keeps_the_old_gallery(
    tmp_path, analysis, monkeypatch, quick
):
    target = tmp_path / "out"
    build([analysis], target)
    before = tree(target)

    def crash(root, files):
        (root / "partial.html").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "write_tree", crash)
    with pytest.raises(KeyboardInterrupt):
        build([analysis], target)
    assert tree(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_gallery_directory_is_world_readable(tmp_path, analysis, quick):
    build([analysis], tmp_path / "out")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(resolution=4), ValueError, "resolution 4 out of range"),
        (dict(resolution=32.0), TypeError, "resolution must be an int"),
        (dict(render_methods=("cubic",)), ValueError, "unknown render method 'cubic'"),
        (dict(render_methods=()), ValueError, "render_methods is empty"),
        (dict(render_methods=("linear", "linear")), ValueError, "duplicates"),
        (dict(shape="circle"), ValueError, "unknown shape 'circle'"),
        (dict(title=None), TypeError, "title must be a str"),
    ],
)
def test_bad_options_fail_before_rendering(
    tmp_path, analysis, monkeypatch, kwargs, error, match
):
    def never(*args, **kw):
        raise AssertionError("rendered before checking the options")

    monkeypatch.setattr(build_module, "map_pngs", never)
    with pytest.raises(error, match=match):
        build_gallery([analysis], tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_bad_analyses(tmp_path, analysis):
    with pytest.raises(ValueError, match="analyses is empty"):
        build_gallery([], tmp_path / "out")
    with pytest.raises(TypeError, match="wrap one in a list"):
        build_gallery(analysis, tmp_path / "out")
    with pytest.raises(TypeError, match="expected Analysis objects"):
        build_gallery([{"model_name": "x"}], tmp_path / "out")


def test_index_page_lists_models_layers_groups_methods_date_version(site):
    _, files = site
    page = files["index.html"].decode()
    text = "".join(parse(files["index.html"]).text)
    assert "../../etc/<b>model</b>" in text and "synthetic model" in text
    assert "2023-11-14 22:13 UTC" in text and "topojax 0.1.0" in text
    assert "random, jittered grid" in text and "linear, nearest" in text
    assert XSS_IMG in text  # group names listed as text
    links = [
        attrs["href"] for tag, attrs in parse(files["index.html"]).tags if tag == "a"
    ]
    for layer_page in (
        "synthetic-model/layer1/index.html",
        "synthetic-model/layer2/index.html",
    ):
        assert layer_page in links
    thumbs = [a["src"] for t, a in parse(files["index.html"]).tags if t == "img"]
    assert len(thumbs) == 4 and all(src in files for src in thumbs)
    assert "training: 3 frames" in page


def test_compare_page_shows_every_method_side_by_side(site):
    _, files = site
    page = files["synthetic-model/layer1/compare.html"].decode()
    section = page.split('id="classes--linear"')[1].split('id="classes--nearest"')[0]
    rows = section.split('class="compare-row"')[1:]
    assert [re.search(r'compare-method">([^<]+)<', row).group(1) for row in rows] == [
        "random",
        "jittered grid",
    ]
    groups = [re.findall(r'data-group="(\d+)"', row) for row in rows]
    assert groups[0] == groups[1] and len(groups[0]) == 3


def test_tiny_layers_single_groups_and_explicit_order(tmp_path):
    layers = []
    for n_neurons in (1, 2):
        coords = np.linspace(0.2, 0.8, 2 * n_neurons).reshape(n_neurons, 2)
        single = GroupSet("only", ("g",), [0], np.zeros((1, n_neurons)))
        ordered = GroupSet(
            "ordered", ("a", "b", "c"), [1, 2, 3], np.eye(3, n_neurons), order=(2, 0, 1)
        )
        layers.append(
            LayerView(f"l{n_neurons}", n_neurons, {"m": coords}, {}, (single, ordered))
        )
    out = tmp_path / "tiny"
    build([Analysis("tiny", tuple(layers))], out)
    page = (out / "tiny" / "l2" / "index.html").read_text()
    assert "n = 0 (empty)" in page
    assert "No layout-quality numbers" in page
    section = page.split('id="ordered--m--linear"')[1].split("</section>")[0]
    assert re.findall(r'data-group="(\d+)"', section) == ["2", "0", "1"]
    assert all(p.stat().st_size > 0 for p in out.rglob("*.png"))


def test_models_with_the_same_name_get_distinct_directories(analysis):
    options = BuildOptions(
        resolution=8,
        render_methods=("nearest",),
        shape="square",
        title="t",
        build_date="d",
        versions={},
    )
    site = describe_site([analysis, analysis], options)
    pages = {page.path for page in site.pages}
    assert "synthetic-model/layer1/index.html" in pages
    assert "synthetic-model-2/layer1/index.html" in pages
    paths = [path for job in site.maps for path in job.paths]
    assert len(paths) == len(set(paths))
    assert [model["path"] for model in site.models] == [
        "synthetic-model",
        "synthetic-model-2",
    ]


def test_progress_bar_of_the_rendering_goes_to_stderr(analysis, tmp_path, capsys):
    build([analysis], tmp_path / "quiet")
    assert "render maps" not in capsys.readouterr().err
    build([analysis], tmp_path / "loud", progress=True)
    assert "render maps" in capsys.readouterr().err
