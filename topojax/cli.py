"""Command line: ``topojax demo | layout | gallery | analyze``.

Strings naming methods and files live here; everything below takes values.

Every bad input ends in one line on stderr, ``topojax COMMAND: error: ...``, and
exit status 2 (130 when interrupted): `main` turns the error types the package
raises for bad input and files (`EXPECTED_ERRORS`) into that line. ``--debug``
shows the traceback instead. ``SOURCE_DATE_EPOCH`` is checked first.
"""

from __future__ import annotations

import argparse
import sys
import zipfile

from topojax._env import source_date_epoch

# What bad input or a file-system problem raises in topojax, NumPy and the
# standard library (json.JSONDecodeError and UnicodeDecodeError are ValueErrors).
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    OSError,
    EOFError,
    KeyError,
    IndexError,
    OverflowError,
    MemoryError,
    zipfile.BadZipFile,
)
_MAX_MESSAGE = 2000
_GALLERY_RULE = (
    "An existing gallery is replaced only when it holds nothing but the files "
    "its last build wrote, unchanged (listed with their sha256 in its "
    "manifest.json); any other file (a .git/, a CNAME, an edited page) makes the "
    "build stop before rendering, unless --keep-unknown (copy those files into "
    "the new gallery) or --force (delete them). A directory that is not a "
    "gallery, or a file, is replaced only with --force. The new gallery is "
    "written next to the target and swapped in at the end; the old one stays "
    "until then."
)
_ANALYZE_HELP = """\
Analyse your own Flax model on labelled data: capture every chosen layer, profile
the groups (classes, the model's correct/wrong inputs, ...), lay out the neurons
and write a gallery to --out, plus the analysis to OUT.analysis.npz beside it
(rebuild with: topojax gallery OUT.analysis.npz --out OUT).

The factory, FILE.py:FUNCTION or MODULE:FUNCTION (like uvicorn main:app), takes
no arguments and returns one of
  - an NNX module (flax.nnx.Module);
  - (linen_module, variables), variables from linen_module.init(...);
  - (module, variables, apply_kwargs): keyword arguments of the forward pass,
    e.g. {"train": False} for BatchNorm (variables None for an NNX module).
The model is run in inference mode; its output must be class scores
(batch, n_classes) for the errors and confusion group sets. With --checkpoint,
the Orbax checkpoint's paths and shapes must be the model's: NNX
nnx.state(model) (or its pure dict), Linen the variables (alone or inside a
saved train state).

Example, model.py:

    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(64, 32, rngs=rngs)
            self.out = nnx.Linear(32, 10, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.hidden(x.reshape(len(x), -1))))

    def make_model():
        return MLP(nnx.Rngs(0))

data.npz: np.savez("data.npz", x=images, y=labels, class_names=names)

    topojax analyze model.py:make_model --data data.npz --out gallery \\
        --checkpoint checkpoints/ --groups classes,errors
"""
_ANALYZE_EPILOG = """\
Without --layers, every hidden post-activation layer is analysed (the outputs of
activation functions, e.g. hidden.relu). Bad input ends in a one-line message
and exit status 2 before anything is computed or written. An existing gallery
is replaced only when it holds nothing but the files its last build wrote,
unchanged, and OUT.analysis.npz only when it is a saved analysis; --force
replaces either whatever it holds.
"""


def _cmd_demo(args: argparse.Namespace) -> int:
    from topojax.demo import run_demo
    from topojax.gallery.build import check_target

    check_target(args.out, force=args.force)  # before the training, not after
    run_demo(out_dir=args.out, seed=args.seed, force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``topojax`` command."""
    parser = argparse.ArgumentParser(
        prog="topojax",
        description="Topographic activation maps of neural layers.",
        epilog="Bad input ends in a one-line message and exit status 2.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error instead of one line",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="train small Flax models on the bundled digits and build a gallery",
        epilog=_GALLERY_RULE,
    )
    demo.add_argument(
        "--out",
        default="topojax-gallery",
        help="output directory (checked before training)",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--force",
        action="store_true",
        help="replace --out whatever it holds (deletes files the gallery did not "
        "write)",
    )
    demo.set_defaults(func=_cmd_demo)

    # --- `layout` subcommand (owned by the layouts work) ---
    def _load_features(path, array_name: str | None):
        import numpy as np

        from topojax.gallery.store import load_npz

        with open(path, "rb") as file:
            magic = file.read(4)
        if magic.startswith(b"PK"):  # a zip archive: .npz, read within bounds
            with zipfile.ZipFile(path) as archive:
                names = [
                    name[: -len(".npy")]
                    for name in archive.namelist()
                    if name.endswith(".npy")
                ]
            if array_name is None and len(names) == 1:
                array_name = names[0]
            if array_name not in names:
                wanted = "pass --key" if array_name is None else f"no {array_name!r}"
                raise ValueError(f"{path}: {wanted}; arrays in the file: {names}")
            return load_npz(path, [array_name])[array_name]
        if array_name is not None:
            raise ValueError(f"--key is only for .npz files; {path} is not one")
        if not magic:
            raise ValueError(f"{path} is empty; expected a .npy or .npz file")
        try:
            # Memory-mapped: a header promising more data than the file holds
            # is refused before anything is allocated.
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise ValueError(f"cannot read {path} as .npy/.npz: {error}") from None

    def _check_output(out, force: bool) -> None:
        import os

        if out.suffix != ".npy":
            raise ValueError(f"--out must name a .npy file; got {out}")
        if out.is_dir():
            raise IsADirectoryError(f"--out {out} is a directory; expected a .npy file")
        if (out.exists() or out.is_symlink()) and not force:
            raise FileExistsError(f"{out} exists; pass --force to replace it")
        ancestor = out.absolute().parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise NotADirectoryError(f"cannot create {out}: {ancestor} is a file")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write {out}: no permission in {ancestor}")

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
        _check_output(out, args.force)
        if source.is_dir():
            raise IsADirectoryError(f"{source} is a directory; expected a .npy file")
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
        index = build_gallery(  # checks --out before rendering
            analyses,
            args.out,
            resolution=args.resolution,
            render_methods=tuple(args.render),
            shape=args.shape,
            title=args.title,
            force=args.force,
            keep_unknown=args.keep_unknown,
        )
        print(f"wrote the gallery of {len(analyses)} model(s); open {index}")
        return 0

    gallery = sub.add_parser(
        "gallery",
        help="build a static HTML gallery from analyses saved with "
        "topojax.gallery.save_analysis",
        epilog=_GALLERY_RULE,
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
    replace = gallery.add_mutually_exclusive_group()
    replace.add_argument(
        "--keep-unknown",
        action="store_true",
        help="copy files in --out that the last build did not write into the new "
        "gallery (refused if one has the name of a gallery file)",
    )
    replace.add_argument(
        "--force",
        action="store_true",
        help="replace --out whatever it holds (deletes files the gallery did not "
        "write)",
    )
    gallery.set_defaults(func=_cmd_gallery)

    # --- `analyze` subcommand (owned by the loading work) ---
    def _analysis_file(out):
        # Beside the gallery, not in it: a gallery holds only what its build
        # wrote, and `topojax gallery` rebuilds it from this file.
        return out.with_name(f"{out.name}.analysis.npz")

    def _check_analysis_file(path, force: bool) -> None:
        if path.is_dir():
            raise IsADirectoryError(
                f"{path} is a directory; the analysis is saved there as a file"
            )
        if (path.exists() or path.is_symlink()) and not force:
            try:
                with zipfile.ZipFile(path) as archive:  # a save_analysis header
                    ours = "__analysis__.json.npy" in archive.namelist()
            except (OSError, zipfile.BadZipFile):
                ours = False
            if not ours:
                raise FileExistsError(
                    f"{path} exists and is not a saved topojax analysis; pass "
                    "--force to replace it"
                )

    def _cmd_analyze(args: argparse.Namespace) -> int:
        import os
        from pathlib import Path

        import jax

        from topojax.gallery import build_gallery, save_analysis
        from topojax.gallery.build import check_target
        from topojax.layout import get_method
        from topojax.loading import (
            load_factory,
            load_labelled_npz,
            output_shape,
            resolve_layers,
            restore_checkpoint,
        )
        from topojax.pipeline import GROUP_SPECS, analyze, attribute_groups

        # Everything cheap first: options, outputs, data, model; then compute.
        group_names = [name.strip() for name in args.groups.split(",")]
        unknown = [name for name in group_names if name not in GROUP_SPECS]
        if unknown:
            raise ValueError(
                f"unknown group set(s) {unknown} in --groups {args.groups!r}; "
                f"expected names from {list(GROUP_SPECS)} joined by commas"
            )
        names = group_names + list(args.attributes)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"group set names must be distinct; repeated in --groups and "
                f"--attributes: {repeated}"
            )
        for method in args.methods:
            get_method(method)
        for option, value in (
            ("--n-per-group", args.n_per_group),
            ("--batch-size", args.batch_size),
        ):
            if value < 1:
                raise ValueError(f"{option} must be a positive integer; got {value}")
        class_names = None
        if args.class_names is not None:
            class_names = [name.strip() for name in args.class_names.split(",")]
        out = Path(args.out)
        saved = _analysis_file(out)
        check_target(out, force=args.force)
        _check_analysis_file(saved, args.force)
        data = load_labelled_npz(args.data, args.attributes, class_names=class_names)
        parts = load_factory(args.factory)
        example = data.x[:1]
        layers = resolve_layers(parts, example, args.layers)
        specs = [GROUP_SPECS[name] for name in group_names]
        if any(spec.uses_predictions for spec in specs):
            shape = output_shape(parts, example, layers)
            predicting = [spec.name for spec in specs if spec.uses_predictions]
            if len(shape) != 2:
                raise ValueError(
                    f"the model output has shape {shape}; the group sets "
                    f"{predicting} need class scores (batch, n_classes): pass "
                    "--groups classes"
                )
            n_labels = int(data.y.max()) + 1
            if shape[1] < n_labels:
                raise ValueError(
                    f"the labels go up to {n_labels - 1} but the model outputs "
                    f"{shape[1]} class scores; expected labels below {shape[1]}"
                )
            if data.class_names is not None and shape[1] > len(data.class_names):
                raise ValueError(
                    f"the model outputs {shape[1]} class scores but "
                    f"{len(data.class_names)} class names were given; expected "
                    "one name per output"
                )
        if args.checkpoint is not None:
            try:
                parts = restore_checkpoint(parts, args.checkpoint)
            except ImportError as error:  # orbax-checkpoint is optional
                raise ValueError(str(error)) from error
        specs += [
            attribute_groups(name, data.attributes[name]) for name in args.attributes
        ]
        analysis = analyze(
            parts.model,
            data.x,
            data.y,
            key=jax.random.key(args.seed),
            layers=layers,
            variables=parts.variables,
            apply_kwargs=parts.apply_kwargs,
            class_names=data.class_names,
            groups=specs,
            methods=tuple(args.methods),
            n_per_group=args.n_per_group,
            batch_size=args.batch_size,
            model_name=args.name or args.factory.rpartition(":")[2],
            quiet=args.quiet,
        )
        out.absolute().parent.mkdir(parents=True, exist_ok=True)
        partial = saved.with_name(f".{saved.name}.{os.getpid()}.tmp")
        try:
            save_analysis(analysis, partial)
            index = build_gallery(
                [analysis], out, force=args.force, progress=not args.quiet
            )
            os.replace(partial, saved)  # only once the gallery is in place
        finally:
            partial.unlink(missing_ok=True)
        print(
            f"wrote the gallery of {len(layers)} layer(s) to {out}; open {index}\n"
            f"saved the analysis to {saved} (rebuild: topojax gallery {saved} "
            f"--out {out})"
        )
        return 0

    analyze_parser = sub.add_parser(
        "analyze",
        help="analyse your own Flax model on labelled data and build a gallery",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_ANALYZE_HELP,
        epilog=_ANALYZE_EPILOG,
    )
    analyze_parser.add_argument(
        "factory",
        metavar="FACTORY",
        help="FILE.py:FUNCTION or MODULE:FUNCTION returning the model (see above)",
    )
    analyze_parser.add_argument(
        "--data",
        required=True,
        metavar="DATA.npz",
        help=".npz with x (inputs), y (integer labels), optionally class_names "
        "and attribute arrays; read without pickle",
    )
    analyze_parser.add_argument(
        "--out",
        required=True,
        metavar="OUT",
        help="gallery directory; the analysis is saved beside it as OUT.analysis.npz",
    )
    analyze_parser.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="Orbax checkpoint to restore into the model: a CheckpointManager "
        "directory (latest step) or one checkpoint's directory",
    )
    analyze_parser.add_argument(
        "--layers",
        nargs="+",
        metavar="LAYER",
        help="layer names (default: every hidden post-activation layer)",
    )
    analyze_parser.add_argument(
        "--methods",
        nargs="+",
        default=["optimize"],
        metavar="METHOD",
        help="layout methods, e.g. optimize, pca, umap+swarm (default: optimize)",
    )
    analyze_parser.add_argument(
        "--groups",
        default="classes,errors",
        metavar="SETS",
        help="group sets, comma-separated, from classes, errors, confusion "
        "(default: classes,errors; the first one's NAPs place the neurons)",
    )
    analyze_parser.add_argument(
        "--attributes",
        nargs="+",
        default=[],
        metavar="NAME",
        help="per-input attribute arrays in --data, one group set each",
    )
    analyze_parser.add_argument(
        "--n-per-group",
        type=int,
        default=200,
        metavar="N",
        help="inputs sampled per group (default: 200, as the paper)",
    )
    analyze_parser.add_argument(
        "--batch-size",
        type=int,
        default=256,
        metavar="B",
        help="inputs per forward pass (default: 256)",
    )
    analyze_parser.add_argument("--seed", type=int, default=0)
    analyze_parser.add_argument(
        "--name", help="model name in the gallery (default: the factory's name)"
    )
    analyze_parser.add_argument(
        "--class-names",
        metavar="A,B,C",
        help="class names, comma-separated (default: class_names in --data, or "
        "0, 1, ...)",
    )
    analyze_parser.add_argument("--quiet", action="store_true", help="no progress bars")
    analyze_parser.add_argument(
        "--force",
        action="store_true",
        help="replace --out and OUT.analysis.npz whatever they hold",
    )
    analyze_parser.set_defaults(func=_cmd_analyze)
    return parser


def error_line(error: BaseException) -> str:
    """``error`` as one line of text (long messages shortened)."""
    text = str(error)
    if isinstance(error, KeyError):
        text = f"missing key {text}"
    elif not isinstance(error, ValueError | TypeError | OSError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    text = " ".join(text.splitlines()) or type(error).__name__
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 1] + "…"
    return text


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``topojax`` console script.

    Returns:
        0 on success, 2 after a one-line error message on stderr (bad input,
        files that cannot be read or written), 130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    try:
        source_date_epoch()  # before anything reads it
        return args.func(args)
    except EXPECTED_ERRORS as error:
        if args.debug:
            raise
        print(f"topojax {args.command}: error: {error_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"topojax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
