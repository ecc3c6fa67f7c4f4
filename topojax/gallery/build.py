"""`build_gallery`: analyses in memory -> a static, self-contained HTML site.

Steps: check the options (cheap, before any rendering), describe the site as
plain data (`topojax.gallery.site`), produce every file's bytes (maps, data
scripts, thumbnails, Jinja2 pages, static CSS/JS), record them in
``manifest.json``, write everything into a temporary directory next to the
target and move it into place.

Reproducible: the same analyses and options give byte-identical files. The only
time stamp is the build date, taken from ``SOURCE_DATE_EPOCH`` when set.

Safe to re-run: an existing gallery (a directory whose ``manifest.json`` names
this generator) is replaced; an empty directory is filled; any other existing
directory or file is only replaced with ``force=True``.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path

from topojax.gallery.assets import (
    colorbar_png,
    data_script,
    favicon_png,
    map_pngs,
    thumbnail_png,
)
from topojax.gallery.model import Analysis
from topojax.gallery.names import safe_join
from topojax.gallery.site import (
    ASSETS,
    COLORBAR,
    FAVICON,
    BuildOptions,
    Site,
    describe_site,
)
from topojax.gallery.templates import render_page, static_files
from topojax.render import METHODS as RENDER_METHODS
from topojax.render import SHAPES

__all__ = [
    "GENERATOR",
    "MANIFEST",
    "build_date",
    "build_gallery",
    "is_gallery",
    "versions",
]

GENERATOR = "topojax gallery"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024


def versions() -> dict[str, str]:
    """Versions of topojax and the libraries that shape the output."""
    found = {}
    for package in ("topojax", "jax", "jaxlib", "flax", "numpy", "scipy", "jinja2"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "unknown"
    if found["topojax"] == "unknown":
        found["topojax"] = _source_version()
    return found


def _source_version() -> str:
    """The version in ``pyproject.toml`` of a source checkout (not installed)."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        with pyproject.open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def build_date() -> datetime.datetime:
    """Now (UTC, whole seconds), or ``SOURCE_DATE_EPOCH`` when set.

    Raises:
        ValueError: if ``SOURCE_DATE_EPOCH`` is set but not a non-negative int.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    try:
        seconds = int(epoch)
        if seconds < 0:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"SOURCE_DATE_EPOCH={epoch!r}: expected a non-negative integer "
            "(seconds since 1970-01-01 UTC)"
        ) from None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def _check_options(
    analyses, resolution, render_methods, shape, title
) -> tuple[list[Analysis], BuildOptions]:
    if isinstance(analyses, Analysis):
        raise TypeError("analyses must be a sequence of Analysis; wrap one in a list")
    analyses = list(analyses)
    if not analyses:
        raise ValueError("analyses is empty: nothing to put in the gallery")
    for analysis in analyses:
        if not isinstance(analysis, Analysis):
            raise TypeError(f"expected Analysis objects; got {type(analysis).__name__}")
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise TypeError(f"resolution must be an int; got {resolution!r}")
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise ValueError(
            f"resolution {resolution} out of range; expected "
            f"{MIN_RESOLUTION}..{MAX_RESOLUTION} pixels"
        )
    if isinstance(render_methods, str):
        render_methods = (render_methods,)
    render_methods = tuple(render_methods)
    if not render_methods:
        raise ValueError(f"render_methods is empty; choose from {list(RENDER_METHODS)}")
    for style in render_methods:
        if style not in RENDER_METHODS:
            raise ValueError(
                f"unknown render method {style!r}; expected one of "
                f"{list(RENDER_METHODS)}"
            )
    if len(set(render_methods)) != len(render_methods):
        raise ValueError(f"render_methods has duplicates: {render_methods}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {list(SHAPES)}")
    if not isinstance(title, str):
        raise TypeError(f"title must be a str; got {type(title).__name__}")
    date = build_date()
    return analyses, BuildOptions(
        resolution=resolution,
        render_methods=render_methods,
        shape=shape,
        title=title,
        build_date=date.strftime("%Y-%m-%d %H:%M UTC"),
        versions=versions(),
    )


def is_gallery(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a gallery written by this module."""
    manifest = Path(path) / MANIFEST
    try:
        return json.loads(manifest.read_text("utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def _check_target(out_dir: Path, force: bool) -> None:
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        if force:
            return
        raise FileExistsError(
            f"{out_dir} exists and is not a directory; pass force=True (--force) "
            "to replace it"
        )
    if is_gallery(out_dir) or force or not any(out_dir.iterdir()):
        return
    raise FileExistsError(
        f"{out_dir} exists and is not a topojax gallery (no {MANIFEST} from "
        f"{GENERATOR!r}); pass force=True (--force) to replace it"
    )


def _site_files(site: Site, analyses: Sequence[Analysis]) -> dict[str, bytes]:
    options = site.options
    files: dict[str, bytes] = {}
    for name, content in static_files().items():
        files[f"{ASSETS}/{name}"] = content
    files[COLORBAR] = colorbar_png()
    files[FAVICON] = favicon_png()
    sizes = {"resolution": options.resolution, "shape": options.shape}
    plans: dict = {}  # each layout is planned once per render style
    files.update(map_pngs(site.maps, analyses, plans=plans, **sizes))
    for job in site.data:
        files.update(data_script(job, analyses, plans=plans, **sizes))
    for job in site.thumbnails:
        files[job.path] = thumbnail_png(job, analyses)
    common = {
        "title": options.title,
        "build_date": options.build_date,
        "topojax_version": options.versions["topojax"],
        "shape": options.shape,
    }
    for page in site.pages:
        html = render_page(page.template, {**common, **page.context})
        files[page.path] = html.encode("utf-8")
    return files


def _manifest(site: Site, files: dict[str, bytes]) -> bytes:
    manifest = {
        "generator": GENERATOR,
        "manifest_version": MANIFEST_VERSION,
        "build_date": site.options.build_date,
        "versions": site.options.versions,
        "parameters": site.options.parameters(),
        "models": list(site.models),
        "files": {
            path: hashlib.sha256(content).hexdigest()
            for path, content in sorted(files.items())
        },
    }
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for path, content in sorted(files.items()):
        target = safe_join(root, *path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _replace(tmp_dir: Path, out_dir: Path) -> None:
    """Move ``tmp_dir`` to ``out_dir``, keeping the old one until the move is done."""
    old = None
    if out_dir.exists() or out_dir.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        old.rmdir()
        os.replace(out_dir, old)
    try:
        os.replace(tmp_dir, out_dir)
    except BaseException:
        if old is not None:
            os.replace(old, out_dir)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


def build_gallery(
    analyses: Sequence[Analysis],
    out_dir: str | os.PathLike,
    *,
    resolution: int = 128,
    render_methods: Sequence[str] = ("linear", "nearest"),
    shape: str = "square",
    title: str = "topojax gallery",
    force: bool = False,
) -> Path:
    """Write a static HTML gallery of topographic maps.

    Args:
        analyses: one `Analysis` per model.
        out_dir: the gallery directory. Written to a temporary sibling directory
            first and moved into place at the end.
        resolution: map side in pixels (8..1024).
        render_methods: render styles offered by the switch (the first is the
            default and the one used for training frames); any of
            `topojax.render.METHODS`.
        shape: ``"square"`` or ``"disk"`` maps.
        title: the site title.
        force: replace ``out_dir`` even if it is a non-empty directory that is
            not a topojax gallery (or a file).

    Returns:
        Path of the gallery's ``index.html``.

    Raises:
        TypeError, ValueError: bad analyses or options (before any rendering).
        FileExistsError: ``out_dir`` exists, is not a gallery and ``force`` is
            False.

    Example:
        >>> build_gallery([analysis], "gallery")  # doctest: +SKIP
        PosixPath('gallery/index.html')
    """
    out_dir = Path(out_dir)
    analyses, options = _check_options(
        analyses, resolution, render_methods, shape, title
    )
    _check_target(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    site = describe_site(analyses, options)
    files = _site_files(site, analyses)
    files[MANIFEST] = _manifest(site, files)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp_dir.chmod(0o777 & ~umask)
        _write_tree(tmp_dir, files)
        _check_target(out_dir, force)
        _replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir / "index.html"
