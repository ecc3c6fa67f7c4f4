"""The one place where user-supplied names become file names.

Model, layer, method, group-set and group names are arbitrary strings (they may
contain ``/``, ``..``, ``<script>``, spaces or non-ASCII letters). The gallery
never uses them in a path directly: `slugify` maps a name to a short, lower-case
ASCII *slug* made of ``[a-z0-9_-]`` only, so a slug can never be ``.``, ``..``, a
hidden file, an absolute path or contain a separator; `unique_slugs` then
disambiguates names that sanitise alike (``"a b"`` and ``"a/b"``) by appending
``-2``, ``-3``, ... in input order, which is deterministic. `safe_join` checks
the final path stays inside the gallery as a second line of defence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

MAX_SLUG_LENGTH = 48
_UNSAFE = re.compile(r"[^a-z0-9_]+")
# Device names that Windows refuses as file names, whatever the extension.
_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(10)]
    + [f"lpt{i}" for i in range(10)]
)

__all__ = ["MAX_SLUG_LENGTH", "safe_join", "slugify", "unique_slugs"]


def slugify(name: str) -> str:
    """A file-name-safe slug of ``name``.

    Letters with accents lose them (``"Café"`` -> ``"cafe"``); every run of other
    characters becomes one ``-``; the result is lower case, at most
    `MAX_SLUG_LENGTH` characters, starts and ends with ``[a-z0-9_]``, and is
    ``"unnamed"`` when nothing is left.

    Args:
        name: any string.

    Returns:
        A non-empty string matching ``[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?``.

    Raises:
        TypeError: if ``name`` is not a string.

    Example:
        >>> slugify("../Layer 1/<conv>")
        'layer-1-conv'
    """
    if not isinstance(name, str):
        raise TypeError(f"a name must be a str; got {type(name).__name__}: {name!r}")
    # Decompose accented letters and drop the accents; any other non-ASCII
    # character becomes a separator like punctuation does.
    decomposed = unicodedata.normalize("NFKD", name.lower())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    slug = _UNSAFE.sub("-", bare).strip("-")
    slug = slug[:MAX_SLUG_LENGTH].rstrip("-")
    if not slug:
        return "unnamed"
    if slug in _WINDOWS_RESERVED:
        slug += "_"
    return slug


def unique_slugs(
    names: Sequence[str], *, reserved: Iterable[str] = ()
) -> tuple[str, ...]:
    """Distinct slugs for ``names``, in order, avoiding ``reserved``.

    The first name to claim a slug keeps it; later names that sanitise to a taken
    slug get ``-2``, ``-3``, ... (the first free suffix). Equal names also get
    distinct slugs, so the result always has ``len(names)`` distinct entries.

    Args:
        names: the names, e.g. a layer's group names.
        reserved: slugs that must not be used (e.g. fixed directory names that
            share the folder).

    Returns:
        One slug per name, all distinct and none in ``reserved``.

    Example:
        >>> unique_slugs(["a b", "a/b", "A-B"])
        ('a-b', 'a-b-2', 'a-b-3')
    """
    taken = set(reserved)
    slugs = []
    for name in names:
        base = slugify(name)
        slug, suffix = base, 2
        while slug in taken:
            slug = f"{base}-{suffix}"
            suffix += 1
        taken.add(slug)
        slugs.append(slug)
    return tuple(slugs)


def safe_join(root: str | Path, *parts: str) -> Path:
    """``root / parts...``, refusing any result outside ``root``.

    Args:
        root: a directory.
        *parts: relative path parts (normally slugs and fixed file names).

    Returns:
        The joined path.

    Raises:
        ValueError: if a part is absolute, empty, ``.``/``..``, contains a path
            separator, or the joined path leaves ``root``.
    """
    root = Path(root)
    for part in parts:
        if (
            not part
            or part in (".", "..")
            or "/" in part
            or "\\" in part
            or "\0" in part
            or Path(part).is_absolute()
        ):
            raise ValueError(
                f"unsafe path part {part!r}: expected a plain file or directory name"
            )
    path = root.joinpath(*parts)
    resolved_root = root.resolve()
    if not path.resolve().is_relative_to(resolved_root):
        raise ValueError(f"path {path} leaves the gallery directory {root}")
    return path
