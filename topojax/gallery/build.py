"""`build_gallery`: analyses in memory -> a static, self-contained HTML site.

Steps: check the options and the target directory (cheap, before any
rendering: `topojax.gallery.target`), describe the site as plain data
(`topojax.gallery.site`), produce every file's bytes (maps, data scripts,
thumbnails, Jinja2 pages, static CSS/JS), record them with their sha256 in
``manifest.json``, write everything into a work directory next to the target
and swap it into place.

Reproducible: the same analyses and options give byte-identical files. The only
time stamp is the build date, taken from ``SOURCE_DATE_EPOCH`` when set.

Safe to re-run: an existing gallery is replaced only when it holds nothing but
the files its manifest lists, unchanged; an empty directory is filled; anything
else needs ``keep_unknown=True`` or ``force=True`` (see `build_gallery`).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from topojax._env import source_date_epoch
from topojax.gallery.assets import (
    colorbar_png,
    data_script,
    favicon_png,
    map_pngs,
    thumbnail_png,
)
from topojax.gallery.model import Analysis
from topojax.gallery.site import (
    ASSETS,
    COLORBAR,
    FAVICON,
    BuildOptions,
    Site,
    describe_site,
)
from topojax.gallery.target import (
    GENERATOR,
    MANIFEST,
    check_collisions,
    check_target,
    copy_kept,
    is_gallery,
    prepare_target,
    recheck_target,
    settle,
    start_work,
    swap,
    unlock,
    write_tree,
)
from topojax.gallery.templates import render_page, static_files
from topojax.render import METHODS as RENDER_METHODS
from topojax.render import SHAPES

__all__ = [
    "GENERATOR",
    "MANIFEST",
    "build_date",
    "build_gallery",
    "check_target",
    "is_gallery",
    "versions",
]

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
        ValueError: if ``SOURCE_DATE_EPOCH`` is set but not an integer in
            ``0..253402300799`` (the message names the variable and the range).
    """
    seconds = source_date_epoch()
    if seconds is None:
        return datetime.datetime.now(datetime.UTC).replace(microsecond=0)
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


def _site_files(
    site: Site, analyses: Sequence[Analysis], progress: bool = False
) -> dict[str, bytes]:
    options = site.options
    files: dict[str, bytes] = {}
    for name, content in static_files().items():
        files[f"{ASSETS}/{name}"] = content
    files[COLORBAR] = colorbar_png()
    files[FAVICON] = favicon_png()
    sizes = {"resolution": options.resolution, "shape": options.shape}
    plans: dict = {}  # each layout is planned once per render style
    jobs = tqdm(
        site.maps,
        desc="render maps",
        unit="map set",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )
    files.update(map_pngs(jobs, analyses, plans=plans, **sizes))
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


def _planned_paths(site: Site) -> list[str]:
    """Every file the gallery of ``site`` writes, known before any rendering."""
    paths = [f"{ASSETS}/{name}" for name in static_files()]
    paths += [COLORBAR, FAVICON, MANIFEST]
    paths += [path for job in site.maps for path in job.paths]
    paths += [job.path for job in site.data]
    paths += [job.path for job in site.thumbnails]
    paths += [page.path for page in site.pages]
    return paths


def build_gallery(
    analyses: Sequence[Analysis],
    out_dir: str | os.PathLike,
    *,
    resolution: int = 128,
    render_methods: Sequence[str] = ("linear", "nearest"),
    shape: str = "square",
    title: str = "topojax gallery",
    force: bool = False,
    keep_unknown: bool = False,
    progress: bool = False,
) -> Path:
    """Write a static HTML gallery of topographic maps.

    What may be replaced (checked before any rendering, see `check_target`):
    a missing or empty ``out_dir`` is written; an existing gallery is replaced
    only when every entry in it is a file the previous build wrote and its
    ``manifest.json`` lists with an unchanged sha256. Any other entry (a
    ``.git/``, a ``CNAME``, an edited page) makes the build refuse with a
    message naming the first few, unless ``keep_unknown`` (they are copied into
    the new gallery, not listed in its manifest, so the next build asks
    again) or ``force`` (they are deleted). Any other directory, a file or a
    link is replaced only with ``force``.

    The swap: the new gallery is written into a work directory next to
    ``out_dir`` (``.<name>.tmp-<random>``, marked as ours by a locked marker
    file); the old gallery stays in place until the new one is complete. On
    Linux the two are then exchanged atomically (``renameat2`` with
    ``RENAME_EXCHANGE``), so ``out_dir`` is the complete old or the complete
    new gallery at every instant. Elsewhere (or on file systems without it)
    two renames leave ``out_dir`` missing between them, a window of two system
    calls; a build interrupted there puts the old gallery back, or the next
    build does. Work directories of interrupted builds are removed by the next
    build of the same ``out_dir`` (only ours, not while their build runs).

    A group set whose values are all zero because it has a single non-empty
    group, or whose groups all have identical values, gets a visible warning
    above its maps (the maps would be blank or all the same).

    Args:
        analyses: one `Analysis` per model.
        out_dir: the gallery directory.
        resolution: map side in pixels (8..1024).
        render_methods: render styles offered by the switch (the first is the
            default and the one used for training frames); any of
            `topojax.render.METHODS`.
        shape: ``"square"`` or ``"disk"`` maps.
        title: the site title.
        force: replace ``out_dir`` whatever it holds (a non-gallery directory,
            a file, files the previous build did not write).
        keep_unknown: copy entries of the previous gallery that it did not
            write into the new one (refused if one collides with a gallery
            file). At most one of ``force`` and ``keep_unknown``.
        progress: show a progress bar of the map rendering on stderr.

    Returns:
        Path of the gallery's ``index.html``.

    Raises:
        TypeError, ValueError: bad analyses or options, both flags, or an
            ``out_dir`` holding the current directory (before any rendering).
        FileExistsError: ``out_dir`` may not be replaced (see above), or it
            changed during the build (then nothing was replaced).
        PermissionError: ``out_dir`` or its parent cannot be changed by us
            (before any rendering).

    Example:
        >>> build_gallery([analysis], "gallery")  # doctest: +SKIP
        PosixPath('gallery/index.html')
    """
    analyses, options = _check_options(
        analyses, resolution, render_methods, shape, title
    )
    target = prepare_target(out_dir, force=force, keep_unknown=keep_unknown)
    target.path.parent.mkdir(parents=True, exist_ok=True)
    work, staged, descriptor = start_work(target.path)
    try:
        site = describe_site(analyses, options)
        check_collisions(target, _planned_paths(site))
        files = _site_files(site, analyses, progress)
        files[MANIFEST] = _manifest(site, files)
        check_collisions(target, list(files))
        write_tree(staged, files)
        copy_kept(target, staged)
        recheck_target(target, force=force, keep_unknown=keep_unknown)
        swap(staged, target.path, work)
    finally:
        try:
            settle(target.path, work)
        finally:
            unlock(descriptor)
    return Path(out_dir) / "index.html"
