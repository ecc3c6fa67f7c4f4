"""Find the site templates and render pages with Jinja2.

The templates live in ``site_templates/`` at the top of the repository and are
shipped in the wheel as ``topojax/site_templates`` (hatch ``force-include``).
`template_root` prefers the installed copy and falls back to the source
checkout. Pages are rendered with ``autoescape=True`` (every ``{{ }}`` is HTML-
escaped) and ``StrictUndefined`` (a missing context key is an error, not an
empty string).
"""

from __future__ import annotations

import functools
import importlib.resources
from importlib.resources.abc import Traversable
from pathlib import Path

import jinja2

__all__ = ["STATIC_DIR", "environment", "render_page", "static_files", "template_root"]

STATIC_DIR = "static"


def template_root() -> Traversable:
    """The ``site_templates`` directory: installed package first, then source tree.

    Raises:
        FileNotFoundError: if neither exists (a broken installation).
    """
    packaged = importlib.resources.files("topojax") / "site_templates"
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parents[2] / "site_templates"
    if source.is_dir():
        return source
    raise FileNotFoundError(
        "topojax site templates not found: expected the package data "
        f"{packaged} or the source directory {source}"
    )


def _loader(root: Traversable) -> jinja2.BaseLoader:
    def load(name: str) -> str | None:
        parts = name.split("/")
        if any(part in ("", ".", "..") for part in parts):
            return None
        node = root
        for part in parts:
            node = node / part
        return node.read_text(encoding="utf-8") if node.is_file() else None

    return jinja2.FunctionLoader(load)


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment of the gallery (cached)."""
    env = jinja2.Environment(
        loader=_loader(template_root()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def render_page(template: str, context: dict) -> str:
    """Render one page template with its plain-data context."""
    return environment().get_template(template).render(**context)


def static_files() -> dict[str, bytes]:
    """The CSS and JS files of ``site_templates/static``, by file name."""
    directory = template_root() / STATIC_DIR
    return {
        node.name: node.read_bytes()
        for node in sorted(directory.iterdir(), key=lambda n: n.name)
        if node.is_file()
    }
