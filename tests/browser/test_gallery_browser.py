"""The gallery in a real browser: Debian chromium driven by Playwright, from file://.

One small synthetic gallery (2 layers, 20 neurons, 3 groups, two of them named
with HTML/script injection attempts) is built once per module; one browser is
launched once per module. Every page is watched for console errors, page errors,
JavaScript dialogs (an executed ``alert``) and requests that leave ``file://``.
"""

import functools
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from topojax.gallery import build_gallery, synthetic_analysis
from topojax.render import nearest_neuron

pytestmark = pytest.mark.browser

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "</script><script>alert(1)</script>"
GROUPS = ("alpha", XSS_IMG, XSS_SCRIPT)
RESOLUTION = 64
TOP_K = 4
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def analysis():
    return synthetic_analysis(
        group_names=GROUPS, n_neurons=20, n_frames=3, top_k=TOP_K, seed=3
    )


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, analysis):
    out = tmp_path_factory.mktemp("browser") / "gallery"
    build_gallery([analysis], out, resolution=RESOLUTION)
    return out


@pytest.fixture(scope="module")
def browsers():
    """Lazily launched browser, shared by the module (launched by `page`)."""
    state = {}
    yield state
    if "browser" in state:
        state["browser"].close()
        state["playwright"].stop()


class Watch:
    """Everything a page did that a static, safe gallery must not do."""

    def __init__(self, page, origin="file://"):
        self.origin = origin
        self.errors, self.dialogs, self.requests = [], [], []
        page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", self._dialog)
        page.on("request", lambda r: self.requests.append(r.url))

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def check(self):
        assert self.errors == []
        assert self.dialogs == []
        outside = [u for u in self.requests if not u.startswith(self.origin)]
        assert self.requests and outside == []


def _new_page(browsers, chromium, origin="file://", **context_args):
    if "browser" not in browsers:
        from playwright.sync_api import sync_playwright

        browsers["playwright"] = sync_playwright().start()
        browsers["browser"] = browsers["playwright"].chromium.launch(
            executable_path=chromium, headless=True, args=LAUNCH_ARGS
        )
    context = browsers["browser"].new_context(
        viewport={"width": 1100, "height": 900}, **context_args
    )
    page = context.new_page()
    return context, page, Watch(page, origin)


@pytest.fixture
def page(browsers, chromium):
    context, page, watch = _new_page(browsers, chromium)
    page.watch = watch
    yield page
    context.close()
    watch.check()


def url(gallery: Path, path: str) -> str:
    return (gallery / path).as_uri()


def load_all_images(page):
    """Make lazy images load (also in hidden variants) and wait for all of them."""
    page.evaluate(
        "document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })"
    )
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    return page.evaluate(
        "Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])"
    )


def interior_pixel(indices: np.ndarray, *, neuron_wanted: bool = True):
    """A pixel whose 5 x 5 neighbourhood is one neuron (or all empty)."""
    size = indices.shape[0]
    for i in range(2, size - 2):
        for j in range(2, size - 2):
            block = indices[i - 2 : i + 3, j - 2 : j + 3]
            value = indices[i, j]
            if np.all(block == value) and ((value >= 0) == neuron_wanted):
                return i, j, int(value)
    raise AssertionError("no interior pixel")


def point_at(page, map_locator, i, j):
    box = map_locator.locator("img").bounding_box()
    return (
        box["x"] + (j + 0.5) * box["width"] / RESOLUTION,
        box["y"] + (i + 0.5) * box["height"] / RESOLUTION,
    )


def visible_map(page, group_index=0):
    return page.locator(".variant:not([hidden]) .map").nth(group_index)


def test_every_image_loads_on_every_page(page, gallery):
    pages = sorted(p.relative_to(gallery).as_posix() for p in gallery.rglob("*.html"))
    assert len(pages) == 1 + 2 * 2 + 1
    for path in pages:
        page.goto(url(gallery, path))
        images = load_all_images(page)
        assert images, path
        broken = [src for src, width in images if width == 0]
        assert broken == [], (path, broken)


def test_hover_shows_the_neuron_under_the_pointer(page, gallery, analysis):
    layer = analysis.layers[0]
    page.goto(url(gallery, "synthetic-model/layer1/index.html"))
    for method, method_id, style in (
        ("random", "random", "linear"),
        ("jittered grid", "jittered-grid", "nearest"),
    ):
        page.check(f'input[name="method"][value="{method_id}"]')
        page.check(f'input[name="style"][value="{style}"]')
        indices = nearest_neuron(
            layer.layouts[method], resolution=RESOLUTION, shape="square", method=style
        )
        i, j, neuron = interior_pixel(indices)
        map_locator = visible_map(page, 1)
        assert map_locator.get_attribute("data-method") == method_id
        page.mouse.move(*point_at(page, map_locator, i, j))
        readout = page.locator("#readout")
        assert readout.is_visible()
        assert readout.get_attribute("data-neuron") == str(neuron)
        group = int(map_locator.get_attribute("data-group"))
        value = layer.group_sets[0].values[group, neuron]
        text = readout.text_content()
        assert f"layer1 · neuron {neuron} · {GROUPS[group]} (classes): " in text
        assert float(text.rsplit(": ", 1)[1]) == pytest.approx(
            value, rel=5e-3, abs=1e-4
        )
    # Outside the convex hull of the linear rendering there is no neuron.
    page.check('input[name="method"][value="random"]')
    page.check('input[name="style"][value="linear"]')
    indices = nearest_neuron(
        layer.layouts["random"], resolution=RESOLUTION, method="linear"
    )
    i, j, _ = interior_pixel(indices, neuron_wanted=False)
    page.mouse.move(*point_at(page, visible_map(page), i, j))
    assert page.locator("#readout").get_attribute("data-neuron") == "-1"
    assert "no neuron here" in page.locator("#readout").text_content()


def test_click_opens_the_neuron_card(page, gallery, analysis, tmp_path):
    layer = analysis.layers[0]
    page.goto(url(gallery, "synthetic-model/layer1/index.html"))
    indices = nearest_neuron(
        layer.layouts["random"], resolution=RESOLUTION, method="linear"
    )
    i, j, neuron = interior_pixel(indices)
    map_locator = visible_map(page, 0)
    group = int(map_locator.get_attribute("data-group"))
    shots = Path(os.environ.get("TOPOJAX_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    load_all_images(page)
    page.screenshot(path=str(shots / "layer-page.png"), full_page=True)
    page.mouse.click(*point_at(page, map_locator, i, j))
    card = page.locator("#neuron-card")
    assert card.get_attribute("open") is not None
    assert page.locator("#neuron-card-title").text_content() == f"Neuron {neuron}"
    sections = card.locator(".card-section")
    titles = [t.strip() for t in sections.locator("h3").all_text_contents()]
    assert titles == ["classes", "Top-activating inputs", "Profile features"]
    bars = sections.nth(0).locator("g")
    assert bars.count() == 3
    # The bar chart lists the groups in panel order with this neuron's values.
    order = [
        int(m.get_attribute("data-group"))
        for m in page.locator(".variant:not([hidden]) .map").all()
    ]
    numbers = [
        float(bars.nth(k).locator("text").nth(1).text_content()) for k in range(3)
    ]
    expected = layer.group_sets[0].values[order, neuron]
    np.testing.assert_allclose(numbers, expected, rtol=5e-3, atol=1e-4)
    assert bars.nth(order.index(group)).get_attribute("class") == "current"
    thumbs = card.locator(".inputs img")
    assert thumbs.count() == TOP_K
    page.wait_for_function(
        "() => [...document.querySelectorAll('.inputs img')].every(i => i.complete)"
    )
    widths = card.locator(".inputs img").evaluate_all(
        "imgs => imgs.map(i => i.naturalWidth)"
    )
    assert all(width > 0 for width in widths)
    srcs = thumbs.evaluate_all("imgs => imgs.map(i => i.getAttribute('src'))")
    assert srcs == [f"../inputs/{k}.png" for k in layer.top_inputs[neuron]]
    page.screenshot(path=str(shots / "neuron-card.png"))
    page.keyboard.press("Escape")
    assert card.get_attribute("open") is None


def test_hostile_group_names_render_as_text(page, gallery):
    for path in ("synthetic-model/layer1/index.html", "index.html"):
        page.goto(url(gallery, path))
        assert page.locator('img[src="x"]').count() == 0
        # Only the page's own scripts: topojax.js, plus data.js on layer pages.
        assert page.locator("script").count() == (1 if path == "index.html" else 2)
    page.goto(url(gallery, "synthetic-model/layer1/index.html"))
    captions = page.locator(".variant:not([hidden]) .group-name").all_text_contents()
    assert sorted(captions) == sorted(GROUPS)
    assert (
        page.locator(f'img[alt*="{XSS_IMG[:10]}"]').count() > 0
    )  # in alt text, as text
    indices = nearest_neuron(
        synthetic_analysis(group_names=GROUPS, seed=3, n_frames=3, top_k=TOP_K)
        .layers[0]
        .layouts["random"],
        resolution=RESOLUTION,
        method="linear",
    )
    i, j, neuron = interior_pixel(indices)
    # The read-out shows each name as text (hover every group's map).
    for k in range(len(GROUPS)):
        map_locator = visible_map(page, k)
        page.mouse.move(*point_at(page, map_locator, i, j))
        name = GROUPS[int(map_locator.get_attribute("data-group"))]
        assert (
            f"neuron {neuron} · {name} (classes)"
            in page.locator("#readout").text_content()
        )
        assert page.locator("#readout *").count() == 0
        assert page.locator('img[src="x"]').count() == 0
    page.mouse.click(*point_at(page, visible_map(page), i, j))
    chart_text = page.locator("#neuron-card .bars").first.text_content()
    assert XSS_IMG in chart_text and XSS_SCRIPT in chart_text  # full names in <title>
    assert (
        page.evaluate("document.querySelectorAll('#neuron-card img[src=\"x\"]').length")
        == 0
    )


def test_keyboard_reaches_the_controls_and_the_maps(page, gallery):
    page.goto(url(gallery, "synthetic-model/layer1/index.html"))
    seen = []
    for _ in range(30):
        page.keyboard.press("Tab")
        seen.append(
            page.evaluate(
                "(() => { const e = document.activeElement;"
                " return e.tagName + '|' + (e.name || '') + '|' + e.className; })()"
            )
        )
        if seen[-1].endswith("|map"):
            break
    assert any(s.startswith("INPUT|method|") for s in seen), seen
    assert any(s.startswith("INPUT|style|") for s in seen), seen
    assert any(s.startswith("A|") for s in seen), seen
    assert seen[-1] == "DIV||map", seen
    # Arrow keys move a read-out cursor over the focused map; Enter opens the card.
    page.keyboard.press("ArrowRight")
    assert page.locator("#readout").is_visible()
    assert page.locator(".map:focus .cursor").is_visible()
    neuron = page.locator("#readout").get_attribute("data-neuron")
    page.keyboard.press("Enter")
    assert page.locator("#neuron-card").get_attribute("open") is not None
    assert page.locator("#neuron-card-title").text_content() == f"Neuron {neuron}"
    assert page.evaluate("document.activeElement.id") == "neuron-card-close"
    page.keyboard.press("Enter")  # the focused Close button
    assert page.locator("#neuron-card").get_attribute("open") is None
    assert page.evaluate("document.activeElement.className") == "map"
    # Radio groups switch the layout with the arrow keys.
    page.focus('input[name="method"][value="random"]')
    page.keyboard.press("ArrowRight")
    assert page.locator(".variant:not([hidden])").first.get_attribute(
        "data-method"
    ) == ("jittered-grid")
    assert page.locator("tr.current th").text_content() == "jittered grid"


def test_training_slider(page, gallery, analysis):
    page.goto(url(gallery, "synthetic-model/layer1/training.html"))
    frames = page.locator(".frame:not([hidden])")
    assert frames.count() == 1 and frames.first.get_attribute("data-frame") == "2"
    page.focus("#training-frame")
    page.keyboard.press("Home")
    assert page.locator(".frame:not([hidden])").first.get_attribute("data-frame") == "0"
    assert page.locator("#training-frame-label").text_content() == "epoch 1"
    training = analysis.layers[0].training
    indices = nearest_neuron(
        analysis.layers[0].layouts[training.method],
        resolution=RESOLUTION,
        method="linear",
    )
    i, j, neuron = interior_pixel(indices)
    map_locator = page.locator(".frame:not([hidden]) .map").first
    page.mouse.move(*point_at(page, map_locator, i, j))
    text = page.locator("#readout").text_content()
    assert f"neuron {neuron}" in text and "(epoch 1)" in text
    group = int(map_locator.get_attribute("data-group"))
    value = float(text.rsplit(": ", 1)[1])
    assert value == pytest.approx(training.values[0, group, neuron], rel=5e-3, abs=1e-4)


def test_pages_read_without_javascript(browsers, chromium, gallery):
    context, page, watch = _new_page(browsers, chromium, java_script_enabled=False)
    page.goto(url(gallery, "synthetic-model/layer1/index.html"))
    assert page.locator(".variant").count() == 4
    assert all(v.is_visible() for v in page.locator(".variant").all())
    assert not page.locator("#view-controls").is_visible()
    assert page.locator(".variant-index").is_visible()
    page.goto(url(gallery, "synthetic-model/layer1/training.html"))
    assert all(f.is_visible() for f in page.locator(".frame").all())
    assert page.locator(".frame").count() == 3
    context.close()
    watch.check()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_works_from_a_sub_path_of_a_static_host(browsers, chromium, gallery):
    """Served over HTTP below /some/sub/path/, as on GitHub Pages."""
    root = gallery.parent
    (root / "some" / "sub").mkdir(parents=True, exist_ok=True)
    link = root / "some" / "sub" / "path"
    if not link.exists():
        link.symlink_to(gallery, target_is_directory=True)
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/some/sub/path/"
    try:
        context, page, watch = _new_page(browsers, chromium, origin=base)
        page.goto(base + "index.html")
        page.click("a.layer-card-link >> nth=0")
        page.wait_for_url(base + "synthetic-model/layer1/index.html")
        images = load_all_images(page)
        assert images and all(width > 0 for _, width in images)
        page.click('a:text("Compare methods")')
        page.wait_for_url(base + "synthetic-model/layer1/compare.html")
        assert load_all_images(page)
        context.close()
        watch.check()
    finally:
        server.shutdown()
        server.server_close()
