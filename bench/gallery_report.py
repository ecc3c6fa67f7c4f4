"""Gallery page weight, build time and screenshots.

python bench/gallery_report.py digits --out /tmp/digits-gallery
    Train the digits MLP for a few epochs (one training frame per epoch),
    analyse both hidden layers with every registered layout method, with a
    "classes" and an "errors" (correct/wrong per class) group set, build the
    gallery and report build time and page weight. A stand-in for
    `topojax demo` while it is being finished; the demo is what ships.
python bench/gallery_report.py weight DIR
    Page weight of any gallery (e.g. the demo's).
python bench/gallery_report.py screenshots DIR OUT
    Headless-chromium screenshots of the first layer page and a neuron card.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
from pathlib import Path

import numpy as np


def digits_analysis(epochs: int, seed: int):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from topojax.capture import make_capture
    from topojax.digits import DIGIT_NAMES, MLP, load_digits_split, predict, train_model
    from topojax.gallery import Analysis, GroupSet, LayerView, TrainingSeries
    from topojax.groups import error_contrast
    from topojax.layout import METHODS, get_method
    from topojax.metrics import layout_report
    from topojax.profiles import layout_features, naps, profile

    layers = ["hidden1", "hidden2"]
    key = jax.random.key(seed)
    data = load_digits_split(seed)
    model = MLP(rngs=nnx.Rngs(seed))
    labels = np.asarray(data.y_test)

    def profiles_of(group_ids, names):
        model.eval()
        capture_fn = make_capture(model, layers)
        result = profile(capture_fn, [(data.x_test, group_ids)], names)
        model.train()
        return result

    frames = {layer: [] for layer in layers}
    for _ in range(epochs):
        key, train_key = jax.random.split(key)
        train_model(model, data, key=train_key, epochs=1)
        class_profiles = profiles_of(labels, DIGIT_NAMES)
        for layer in layers:
            frames[layer].append(np.asarray(naps(class_profiles[layer])))
    model.eval()
    predictions = predict(model, data.x_test)
    error_ids, error_names = error_contrast(labels, predictions, DIGIT_NAMES)
    class_profiles = profiles_of(labels, DIGIT_NAMES)
    error_profiles = profiles_of(error_ids, error_names)
    activations = make_capture(model, layers)(jnp.asarray(data.x_test))
    methods = [
        m for m in ("pca", "som", "graph", "tsne", "umap", "random") if m in METHODS
    ]
    views = []
    for layer in layers:
        features = np.asarray(layout_features(class_profiles[layer]))
        layouts, reports = {}, {}
        for method in methods:
            key, layout_key, metric_key = jax.random.split(key, 3)
            coords = np.asarray(get_method(method)(features, key=layout_key).coords)
            layouts[method] = coords
            reports[method] = layout_report(features, coords, key=metric_key)
        per_input = np.asarray(activations[layer]).reshape(len(labels), -1)
        views.append(
            LayerView(
                name=layer,
                n_neurons=features.shape[0],
                layouts=layouts,
                layout_metrics=reports,
                group_sets=(
                    GroupSet(
                        "classes",
                        DIGIT_NAMES,
                        np.asarray(class_profiles[layer].counts),
                        np.asarray(naps(class_profiles[layer])),
                    ),
                    GroupSet(
                        "errors",
                        error_names,
                        np.asarray(error_profiles[layer].counts),
                        np.asarray(naps(error_profiles[layer])),
                    ),
                ),
                training=TrainingSeries(
                    labels=tuple(f"epoch {e + 1}" for e in range(epochs)),
                    group_names=DIGIT_NAMES,
                    values=np.stack(frames[layer]),
                    method=methods[0],
                ),
                top_inputs=np.argsort(-per_input.T, axis=1)[:, :8],
            )
        )
    return Analysis(
        model_name="digits MLP",
        layers=tuple(views),
        inputs=np.asarray(data.x_test[..., 0]),
        params={"epochs": epochs, "seed": seed, "methods": methods},
    )


def weight(root: Path) -> dict:
    files = [p for p in root.rglob("*") if p.is_file()]
    by_kind = collections.defaultdict(lambda: [0, 0])
    for path in files:
        kind = path.suffix or path.name
        if "/maps/training/" in path.as_posix():
            kind = ".png (training)"
        elif "/maps/" in path.as_posix():
            kind = ".png (maps)"
        elif "/inputs/" in path.as_posix():
            kind = ".png (inputs)"
        by_kind[kind][0] += 1
        by_kind[kind][1] += path.stat().st_size
    layer_pages = sorted(root.glob("*/*/index.html"))
    page = layer_pages[0]
    html = page.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    first_variant = html.split('class="variant"')[1].split("</section>")[0]
    default_srcs = re.findall(r'<img src="([^"]+)"', first_variant)
    assets = [
        page.parent / "data.js",
        root / "assets/topojax.css",
        root / "assets/topojax.js",
    ]

    def size(paths):
        return sum(
            (page.parent / p).stat().st_size if isinstance(p, str) else p.stat().st_size
            for p in paths
        )

    return {
        "files": len(files),
        "total_bytes": sum(p.stat().st_size for p in files),
        "by_kind": {
            k: {"files": v[0], "bytes": v[1]} for k, v in sorted(by_kind.items())
        },
        "layer_page": page.relative_to(root).as_posix(),
        "layer_page_html_bytes": page.stat().st_size,
        "layer_page_all_images_bytes": size(set(srcs)),
        "layer_page_first_view_bytes": page.stat().st_size
        + size(assets)
        + size(default_srcs)
        + (root / "assets/colorbar.png").stat().st_size,
        "data_js_bytes": (page.parent / "data.js").stat().st_size,
    }


def screenshots(root: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    page_path = sorted(root.glob("*/*/index.html"))[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(page_path.as_uri())
        page.evaluate(
            "document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })"
        )
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        page.screenshot(path=str(out / "layer-page.png"), full_page=True)
        box = page.locator(".variant:not([hidden]) .map img").nth(2).bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.55)
        page.screenshot(path=str(out / "hover.png"))
        page.mouse.click(
            box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.55
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('.inputs img')].every(i => i.complete)"
        )
        page.screenshot(path=str(out / "neuron-card.png"))
        browser.close()
    print(f"screenshots in {out}/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    digits = sub.add_parser("digits")
    digits.add_argument("--out", default="/tmp/digits-gallery")
    digits.add_argument("--epochs", type=int, default=5)
    digits.add_argument("--seed", type=int, default=0)
    digits.add_argument("--save", help="also save the analysis (.npz) here")
    weigh = sub.add_parser("weight")
    weigh.add_argument("dir")
    shots = sub.add_parser("screenshots")
    shots.add_argument("dir")
    shots.add_argument("out")
    args = parser.parse_args(argv)
    if args.command == "digits":
        from topojax.gallery import build_gallery

        started = time.perf_counter()
        analysis = digits_analysis(args.epochs, args.seed)
        analysed = time.perf_counter()
        if args.save:
            from topojax.gallery import save_analysis

            save_analysis(analysis, args.save)
        build_gallery([analysis], args.out, force=True)
        built = time.perf_counter()
        print(f"analysis {analysed - started:.1f} s, build {built - analysed:.1f} s")
        print(json.dumps(weight(Path(args.out)), indent=1))
    elif args.command == "weight":
        print(json.dumps(weight(Path(args.dir)), indent=1))
    else:
        screenshots(Path(args.dir), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
