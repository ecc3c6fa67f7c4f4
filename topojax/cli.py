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
