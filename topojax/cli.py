"""Command line: ``topojax demo | layout | gallery``.

Strings naming methods and files live here; everything below takes values.
"""

from __future__ import annotations

import argparse
import sys


def _cmd_demo(args: argparse.Namespace) -> int:
    from topojax.demo import run_demo

    run_demo(out_dir=args.out, seed=args.seed, force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``topojax`` command."""
    parser = argparse.ArgumentParser(
        prog="topojax", description="Topographic activation maps of neural layers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="train small Flax models on the bundled digits and build a gallery"
    )
    demo.add_argument("--out", default="topojax-gallery", help="output directory")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--force", action="store_true", help="replace a non-gallery directory"
    )
    demo.set_defaults(func=_cmd_demo)

    # --- `layout` subcommand (owned by the layouts work) ---
    def _load_features(path, array_name: str | None):
        import numpy as np

        try:
            loaded = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read {path} as .npy/.npz: {error}") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            if array_name is not None:
                raise ValueError(f"--key is only for .npz files; {path} is a .npy")
            return loaded
        with loaded:
            names = list(loaded.files)
            if array_name is None and len(names) == 1:
                array_name = names[0]
            if array_name not in names:
                wanted = "pass --key" if array_name is None else f"no {array_name!r}"
                raise ValueError(f"{path}: {wanted}; arrays in the file: {names}")
            return loaded[array_name]

    def _cmd_layout(args: argparse.Namespace) -> int:
        import os
        import time
        from pathlib import Path

        import jax
        import numpy as np

        from topojax.layout import check_features, get_method
        from topojax.metrics import layout_report

        method = get_method(args.method)
        source, out = Path(args.features), Path(args.out)
        if out.suffix != ".npy":
            raise ValueError(f"--out must name a .npy file; got {out}")
        if out.exists() and not args.force:
            raise FileExistsError(f"{out} exists; pass --force to replace it")
        if not source.is_file():
            raise FileNotFoundError(f"features file not found: {source}")
        features = check_features(_load_features(source, args.key), metric=args.metric)
        layout_key, report_key = jax.random.split(jax.random.key(args.seed))
        start = time.perf_counter()
        result = method(features, key=layout_key, metric=args.metric)
        coords = np.asarray(result.coords)
        seconds = time.perf_counter() - start
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            with open(partial, "wb") as file:
                np.save(file, coords)
            os.replace(partial, out)  # atomic: readers never see half a file
        finally:
            partial.unlink(missing_ok=True)
        n_neurons, n_features = features.shape
        print(
            f"{result.method}: {n_neurons} neurons x {n_features} features "
            f"({args.metric}) -> {out} in {seconds:.2f} s"
        )
        if not args.no_report:
            report = layout_report(features, coords, key=report_key, metric=args.metric)
            k = int(report.pop("k"))
            at_k = ("trustworthiness", "continuity", "knn_recall")
            for name, value in report.items():
                label = f"{name}@{k}" if name in at_k else name
                print(f"  {label:<20} {value:.4f}")
        return 0

    layout = sub.add_parser(
        "layout",
        help="lay out the neurons of a feature matrix (n_neurons, n_features) in 2-D",
    )
    layout.add_argument(
        "features", metavar="FEATURES", help=".npy or .npz file, one row per neuron"
    )
    layout.add_argument(
        "--method",
        required=True,
        help="layout method, e.g. pca, som, graph, umap, or a chain like umap+swarm",
    )
    layout.add_argument("--out", required=True, help="output .npy of (n_neurons, 2)")
    layout.add_argument("--seed", type=int, default=0)
    layout.add_argument(
        "--metric", default="cosine", help="cosine (default), euclidean or correlation"
    )
    layout.add_argument("--key", help="array name inside an .npz file")
    layout.add_argument("--force", action="store_true", help="replace --out")
    layout.add_argument(
        "--no-report", action="store_true", help="skip the quality metrics"
    )
    layout.set_defaults(func=_cmd_layout)

    # --- `gallery` subcommand (owned by the gallery work) ---
    def _cmd_gallery(args: argparse.Namespace) -> int:
        from topojax.gallery import build_gallery, load_analysis

        analyses = [load_analysis(path) for path in args.analyses]
        index = build_gallery(
            analyses,
            args.out,
            resolution=args.resolution,
            render_methods=tuple(args.render),
            shape=args.shape,
            title=args.title,
            force=args.force,
        )
        print(f"wrote the gallery of {len(analyses)} model(s); open {index}")
        return 0

    gallery = sub.add_parser(
        "gallery",
        help="build a static HTML gallery from analyses saved with "
        "topojax.gallery.save_analysis",
    )
    gallery.add_argument(
        "analyses", nargs="+", metavar="ANALYSIS", help="saved analysis (.npz) files"
    )
    gallery.add_argument("--out", required=True, help="output directory")
    gallery.add_argument("--resolution", type=int, default=128, help="map side (px)")
    gallery.add_argument(
        "--render",
        nargs="+",
        default=["linear", "nearest"],
        choices=("linear", "nearest", "gaussian"),
        help="render styles offered (the first is the default view)",
    )
    gallery.add_argument("--shape", choices=("square", "disk"), default="square")
    gallery.add_argument("--title", default="topojax gallery", help="site title")
    gallery.add_argument(
        "--force", action="store_true", help="replace a non-gallery directory"
    )
    gallery.set_defaults(func=_cmd_gallery)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``topojax`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"topojax {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
