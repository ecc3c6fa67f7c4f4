"""The gallery directory on disk: what may be replaced, and the swap.

`check_target` (and `inspect_target`) decide whether a gallery may be written
to a directory, before any rendering: a missing or empty directory is written;
an existing gallery is replaced only when every entry in it is a file its
``manifest.json`` lists with an unchanged sha256, unless the caller keeps the
other entries (``keep_unknown``: copied into the new gallery) or replaces them
(``force``); anything else is replaced only with ``force``.

A build writes into a work directory next to the target,
``.<name>.tmp-<random>``: a marker file (which marks the directory as ours and,
locked with ``flock``, as in use), ``gallery/`` (the new gallery) and, during a
two-rename swap, ``previous/`` (the old target). `swap` exchanges the new
gallery with the target atomically where the OS can (``renameat2`` with
``RENAME_EXCHANGE`` on Linux), else with two renames. `finish_interrupted`
removes what interrupted builds left behind, putting a target back first if a
swap was interrupted between its two renames.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from topojax.gallery.names import safe_join

try:
    import fcntl
except ImportError:  # not POSIX: work directories are not locked
    fcntl = None

__all__ = [
    "GENERATOR",
    "MANIFEST",
    "Target",
    "check_collisions",
    "check_target",
    "copy_kept",
    "finish_interrupted",
    "inspect_target",
    "is_gallery",
    "settle",
    "start_work",
    "swap",
    "unlock",
    "write_tree",
]

GENERATOR = "topojax gallery"
MANIFEST = "manifest.json"


def is_gallery(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a gallery written by this module."""
    return _read_manifest(Path(path)) is not None


def _read_manifest(root: Path) -> dict | None:
    """The manifest of the gallery at ``root``, or None if it is not one of ours."""
    manifest = root / MANIFEST
    try:
        if not stat.S_ISREG(manifest.lstat().st_mode):
            return None
        content = json.loads(manifest.read_text("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(content, dict) or content.get("generator") != GENERATOR:
        return None
    return content


# Files of an interrupted build live in one work directory next to the target,
# ``.<name>.tmp-<random>``: the marker file (which marks it as ours and, locked,
# as in use), the new gallery being written and, during a two-rename swap, the
# previous target.
_MARKER = "topojax-build.json"
_STAGED = "gallery"
_PREVIOUS = "previous"
_LEGACY = "legacy"
_SHOWN = 5  # unknown entries named in a refusal
_HASH_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Target:
    """What a gallery directory holds, as checked before a build.

    Attributes:
        path: the absolute target path.
        source: where its content is now: ``path``, or the previous target
            that an interrupted swap left in a work directory.
        kind: ``"missing"``, ``"empty"``, ``"gallery"``, ``"foreign"`` (a
            directory that is not a gallery) or ``"file"`` (or a link).
        kept: with ``keep_unknown``, the entries of a gallery to copy into the
            new one: those its manifest does not list or whose content changed
            since (relative POSIX paths; empty directories end in ``/``).
        fingerprint: mode, size and mtime of those entries, to notice a change
            during the build.
    """

    path: Path
    source: Path
    kind: str
    kept: tuple[str, ...] = ()
    fingerprint: tuple = ()


def _absolute(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as an absolute path, its parent resolved, its last part kept."""
    path = Path(os.path.abspath(os.fspath(out_dir)))
    if not path.name:
        raise ValueError(f"cannot use {path} as the gallery directory")
    return path.parent.resolve() / path.name


def _check_location(path: Path) -> None:
    """Refuse a target that holds the current directory or an unwritable parent."""
    if not path.is_symlink():
        try:
            cwd = Path.cwd().resolve()
        except OSError:
            cwd = None
        if cwd is not None and (cwd == path or path in cwd.parents):
            raise ValueError(
                f"cannot replace {path}: it is the current directory or contains "
                "it; run topojax from outside it (e.g. cd ..)"
            )
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"cannot create {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(
            f"cannot write the gallery {path}: no write permission in {ancestor}"
        )


def _check_owner(path: Path) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() == 0:
        return
    owner = path.lstat().st_uid
    if owner != os.geteuid():
        raise PermissionError(
            f"cannot replace {path}: it belongs to another user (uid {owner}); only "
            "its owner can replace it"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _raise_unreadable(error: OSError) -> None:
    raise PermissionError(
        f"cannot read {error.filename}: {error.strerror}; the gallery directory "
        "must be readable and writable to be replaced"
    ) from None


def _scan(root: Path) -> dict[str, os.stat_result]:
    """Every entry under ``root``: files, links and empty directories (``a/``).

    Also checks that every directory can be emptied (the old gallery is deleted
    after the swap).

    Returns:
        ``{relative POSIX path: lstat}``.
    """
    entries: dict[str, os.stat_result] = {}
    for top, dirnames, filenames in _walk(root):
        relative = Path(top).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        if not os.access(top, os.R_OK | os.W_OK | os.X_OK):
            raise PermissionError(
                f"cannot replace {root}: no permission to delete files in {top}"
            )
        if prefix and not dirnames and not filenames:
            entries[prefix] = os.lstat(top)
        for name in filenames:
            entries[prefix + name] = os.lstat(os.path.join(top, name))
    return entries


def _walk(root: Path):
    """`os.walk` that raises on unreadable directories and never follows links.

    Yields ``(top, dirnames, filenames)``; links to directories are listed as
    files.
    """
    for top, dirnames, filenames in os.walk(root, onerror=_raise_unreadable):
        links = [name for name in dirnames if os.path.islink(os.path.join(top, name))]
        for name in links:
            dirnames.remove(name)
        yield top, dirnames, filenames + links


def inspect_target(path: Path, source: Path, force: bool, keep_unknown: bool) -> Target:
    """Classify ``source`` (the content of ``path``) and refuse what may not go."""
    if not os.path.lexists(source):
        return Target(path, source, "missing")
    _check_owner(source)
    if source.is_symlink() or not source.is_dir():
        if force:
            return Target(path, source, "file")
        raise FileExistsError(
            f"{path} exists and is not a directory; pass force=True (--force) to "
            "replace it"
        )
    entries = _scan(source)
    if not entries:
        return Target(path, source, "empty")
    manifest = _read_manifest(source)
    if manifest is None:
        if force:
            return Target(path, source, "foreign")
        raise FileExistsError(
            f"{path} exists and is not a topojax gallery (no {MANIFEST} from "
            f"{GENERATOR!r}); pass force=True (--force) to replace it"
        )
    written = manifest.get("files")
    written = written if isinstance(written, dict) else {}
    unknown, modified = [], []
    for relative, status in sorted(entries.items()):
        if relative == MANIFEST:
            continue
        expected = written.get(relative)
        if not isinstance(expected, str) or not stat.S_ISREG(status.st_mode):
            unknown.append(relative)
        elif _sha256(source / relative) != expected:
            modified.append(relative)
    if force or not (unknown or modified):
        return Target(path, source, "gallery")
    if not keep_unknown:
        raise FileExistsError(
            f"{path} holds files the previous build did not write (or that "
            f"changed since), which a rebuild would delete: "
            f"{_describe_lost(unknown, modified, written)}; pass keep_unknown=True "
            "(--keep-unknown) to copy them into the new gallery or force=True "
            "(--force) to delete them"
        )
    kept = sorted(unknown + modified)
    for relative in kept:
        mode = entries[relative].st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISDIR(mode)):
            raise ValueError(
                f"cannot keep {_show(relative)} in {path}: not a regular file, "
                "link or directory; move it away or pass force=True (--force)"
            )
    fingerprint = tuple(
        (
            relative,
            entries[relative].st_mode,
            entries[relative].st_size,
            entries[relative].st_mtime_ns,
        )
        for relative in kept
    )
    return Target(path, source, "gallery", tuple(kept), fingerprint)


def _show(relative: str) -> str:
    return relative if relative.isprintable() else ascii(relative)


def _describe_lost(unknown: list[str], modified: list[str], written: dict) -> str:
    """The first few entries, e.g. ``".git/ (12 entries), CNAME, a.html (modified)"``.

    Entries inside a directory the manifest knows nothing of are shown as that
    directory.
    """
    known_dirs = {
        "/".join(parts[:end]) + "/"
        for parts in (name.split("/") for name in written)
        for end in range(1, len(parts))
    }
    shown: dict[str, int] = {}
    for relative in sorted(unknown + modified):
        parts = relative.rstrip("/").split("/")
        label = relative
        for end in range(1, len(parts)):
            folder = "/".join(parts[:end]) + "/"
            if folder not in known_dirs:
                label = folder
                break
        if relative in modified:
            label = f"{relative} (modified)"
        shown[label] = shown.get(label, 0) + 1
    items = [
        _show(label)
        if count == 1 or not label.endswith("/")
        else f"{_show(label)} ({count} entries)"
        for label, count in shown.items()
    ]
    listed = ", ".join(items[:_SHOWN])
    if len(items) > _SHOWN:
        listed += f" and {len(items) - _SHOWN} more"
    return listed


def _check_flags(force: bool, keep_unknown: bool) -> None:
    for name, value in (("force", force), ("keep_unknown", keep_unknown)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool; got {value!r}")
    if force and keep_unknown:
        raise ValueError(
            "pass at most one of force=True (delete unknown files) and "
            "keep_unknown=True (keep them)"
        )


def check_target(
    out_dir: str | os.PathLike, *, force: bool = False, keep_unknown: bool = False
) -> None:
    """Check that a gallery may be written to ``out_dir``; cheap, changes nothing.

    `build_gallery` runs the same checks before rendering; call this before
    other expensive work that ends in a gallery (e.g. training). The rule:

    - a missing or empty directory is written;
    - an existing gallery (a directory with a ``manifest.json`` from this
      generator) is replaced only when every entry in it is a file the
      previous build wrote, unchanged (the manifest lists each with its
      sha256). Anything else (a ``.git/``, a ``CNAME``, an edited page, a link,
      an empty directory) is refused, unless ``keep_unknown`` (those entries
      are copied into the new gallery; refused later if one collides with a
      file the gallery writes) or ``force`` (they are deleted);
    - any other directory, a file or a link is replaced only with ``force``.

    The target must not be the current directory or one holding it; its
    parent (or nearest existing ancestor) must be writable; an existing target
    must belong to the current user (unless root) and be writable throughout.
    If an earlier build was interrupted between its two renames (no atomic
    exchange, see `build_gallery`), the previous gallery it left aside is what
    is checked.

    Args:
        out_dir: the gallery directory.
        force: replace whatever is there.
        keep_unknown: keep entries the previous build did not write.

    Raises:
        TypeError: a flag is not a bool.
        ValueError: both flags, or the target holds the current directory.
        FileExistsError: the target may not be replaced (the message lists the
            first few entries that would be lost).
        PermissionError: the target or its parent cannot be changed by us.
    """
    _check_flags(force, keep_unknown)
    path = _absolute(out_dir)
    _check_location(path)
    source = path
    if not os.path.lexists(path):
        source = _restorable(path) or path
    inspect_target(path, source, force, keep_unknown)


def prepare_target(
    out_dir: str | os.PathLike, *, force: bool, keep_unknown: bool
) -> Target:
    """`check_target`, after finishing what interrupted builds left behind.

    Returns:
        The checked `Target` (its ``path`` absolute).
    """
    _check_flags(force, keep_unknown)
    path = _absolute(out_dir)
    _check_location(path)
    finish_interrupted(path)
    return inspect_target(path, path, force, keep_unknown)


def recheck_target(target: Target, *, force: bool, keep_unknown: bool) -> None:
    """Refuse to swap if the target changed since `prepare_target` looked at it.

    Raises:
        FileExistsError: the target gained, lost or changed an entry the build
            does not own (nothing is replaced then).
    """
    now = inspect_target(target.path, target.path, force, keep_unknown)
    if force:
        return
    if (now.kind, now.fingerprint) != (target.kind, target.fingerprint):
        raise FileExistsError(
            f"{target.path} changed during the build; nothing was replaced: run "
            "the build again"
        )


def start_work(path: Path) -> tuple[Path, Path, int | None]:
    """Create and lock a work directory next to ``path``.

    Also the real test that the parent is writable, before any rendering.

    Returns:
        ``(work, staged, descriptor)``: the work directory, the empty directory
        to write the new gallery into, and the locked marker's descriptor
        (for `unlock`).
    """
    work = Path(tempfile.mkdtemp(prefix=_work_prefix(path.name), dir=path.parent))
    descriptor = _lock(work, create=True)
    try:
        os.write(descriptor, _marker_text(path.name))
        staged = work / _STAGED
        staged.mkdir()
    except BaseException:
        unlock(descriptor)
        raise
    return work, staged, descriptor


def _work_prefix(name: str) -> str:
    if len(os.fsencode(name)) <= 200:
        return f".{name}.tmp-"
    return f".{hashlib.sha256(os.fsencode(name)).hexdigest()[:32]}.tmp-"


def _marker_text(name: str) -> bytes:
    return json.dumps({"generator": GENERATOR, "target": name}).encode("utf-8")


def _work_dirs(path: Path) -> list[Path]:
    """Work directories of earlier builds of ``path`` (ours, whether or not live)."""
    prefix = _work_prefix(path.name)
    try:
        names = sorted(os.listdir(path.parent))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if not name.startswith(prefix):
            continue
        work = path.parent / name
        if work.is_symlink() or not work.is_dir():
            continue
        if hasattr(os, "geteuid") and os.geteuid() not in (0, work.stat().st_uid):
            continue
        if _is_ours(work, path.name):
            found.append(work)
    return found


def _is_ours(work: Path, name: str) -> bool:
    """Whether ``work`` holds our marker for target ``name``.

    A build interrupted right after creating its work directory leaves it
    empty, or holding nothing but an empty marker: both count as ours.
    """
    marker = work / _MARKER
    try:
        entries = os.listdir(work)
        if _MARKER not in entries:
            return not entries
        if not stat.S_ISREG(marker.lstat().st_mode):
            return False
        content = marker.read_bytes()
    except OSError:
        return False
    return content == _marker_text(name) or (not content and entries == [_MARKER])


def _lock(work: Path, *, create: bool) -> int | None:
    """Open and lock the marker of ``work``; None if another build holds it."""
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    try:
        descriptor = os.open(work / _MARKER, flags, 0o600)
    except FileNotFoundError:
        return -1  # an empty work directory: nothing to lock
    if fcntl is not None:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            return None
    return descriptor


def unlock(descriptor: int | None) -> None:
    """Release the lock of `start_work` (closing its descriptor)."""
    if descriptor is not None and descriptor >= 0:
        os.close(descriptor)


def _restorable(path: Path) -> Path | None:
    """The previous target an interrupted two-rename swap left aside, if any."""
    for work in reversed(_work_dirs(path)):
        previous = work / _PREVIOUS
        if os.path.lexists(previous):
            return previous
    legacy = [
        old for old in _legacy_dirs(path) if old.name.startswith(f".{path.name}.old-")
    ]
    return legacy[-1] if legacy else None


def finish_interrupted(path: Path) -> None:
    """Undo or clean up what interrupted builds of ``path`` left behind.

    A work directory whose build is still running (its marker is locked) is
    left alone. If ``path`` is missing and a work directory holds the previous
    target (interrupted between the two renames), it is moved back first.
    """
    for work in reversed(_work_dirs(path)):
        descriptor = _lock(work, create=False)
        if descriptor is None:
            continue
        try:
            settle(path, work)
        finally:
            unlock(descriptor)
    legacy = _legacy_dirs(path)
    if legacy and not os.path.lexists(path):
        restore = [old for old in legacy if old.name.startswith(f".{path.name}.old-")]
        if restore:
            _rename(restore[-1], path)
            legacy.remove(restore[-1])
    for old in legacy:
        # Moved into a marked work directory first, so that an interrupted
        # removal still leaves something recognisable.
        work, _, descriptor = start_work(path)
        try:
            _rename(old, work / _LEGACY)
            settle(path, work)
        finally:
            unlock(descriptor)


def _legacy_dirs(path: Path) -> list[Path]:
    """``.<name>.old-*`` / ``.<name>.tmp-*`` galleries left by topojax 0.1 builds.

    They carry no marker; only complete galleries (with our manifest) are
    recognised as ours.
    """
    prefixes = (f".{path.name}.old-", f".{path.name}.tmp-")
    try:
        names = sorted(os.listdir(path.parent))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        old = path.parent / name
        if (
            name.startswith(prefixes)
            and not old.is_symlink()
            and old.is_dir()
            and not os.path.lexists(old / _MARKER)
            and _read_manifest(old) is not None
        ):
            found.append(old)
    return found


def settle(path: Path, work: Path) -> None:
    """Remove the work directory ``work`` of a build of ``path``.

    If ``path`` is missing and ``work`` holds the previous target (a swap
    interrupted between its two renames), it is moved back first.
    """
    if not os.path.lexists(work):
        return
    previous = work / _PREVIOUS
    if not os.path.lexists(path) and os.path.lexists(previous):
        _rename(previous, path)
    _remove_work(work)


def _remove_work(work: Path) -> None:
    """Delete a work directory, its marker last (so it stays recognisable)."""
    for entry in sorted(os.listdir(work)):
        if entry == _MARKER:
            continue
        _remove(work / entry)
    marker = work / _MARKER
    if os.path.lexists(marker):
        marker.unlink()
    work.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _rename(source: Path, destination: Path) -> None:
    os.rename(source, destination)


def _load_renameat2():
    """The C library's ``renameat2`` (Linux 3.15+, glibc 2.28+), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _load_renameat2()
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically; False where the OS or file system cannot."""
    if _RENAMEAT2 is None:
        return False
    status = _RENAMEAT2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if status == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), os.fspath(second))


def swap(staged: Path, path: Path, work: Path) -> None:
    """Put ``staged`` at ``path``; the old content of ``path`` ends up in ``work``.

    With an atomic exchange (``renameat2(RENAME_EXCHANGE)`` on Linux), ``path``
    is the complete old or the complete new content at every instant. Without
    one, two renames leave ``path`` missing between them; an interrupted swap
    is undone at once when possible, else by the next build
    (`finish_interrupted`).
    """
    if not os.path.lexists(path):
        _rename(staged, path)
        return
    if _exchange(staged, path):
        return
    previous = work / _PREVIOUS
    _rename(path, previous)
    try:
        _rename(staged, path)
    except BaseException:
        _rename(previous, path)
        raise


def _write_file(path: Path, content: bytes) -> None:
    path.write_bytes(content)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Write ``{relative POSIX path: bytes}`` under ``root`` (sanitised paths)."""
    for path, content in sorted(files.items()):
        target = safe_join(root, *path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_file(target, content)


def check_collisions(target: Target, files: Sequence[str]) -> None:
    """Refuse kept entries that a gallery file or directory would overwrite."""
    if not target.kept:
        return
    written = set(files) | {MANIFEST}
    folders = {
        "/".join(parts[:end]) + "/"
        for parts in (name.split("/") for name in written)
        for end in range(1, len(parts))
    }
    clashes = []
    for relative in target.kept:
        parts = relative.rstrip("/").split("/")
        ancestors = ("/".join(parts[:end]) for end in range(1, len(parts)))
        if (
            relative.rstrip("/") in written
            or (not relative.endswith("/") and relative + "/" in folders)
            or any(ancestor in written for ancestor in ancestors)
        ):
            clashes.append(_show(relative))
    if clashes:
        listed = ", ".join(clashes[:_SHOWN])
        more = f" and {len(clashes) - _SHOWN} more" if len(clashes) > _SHOWN else ""
        raise FileExistsError(
            f"cannot keep {listed}{more} in {target.path}: the new gallery writes "
            "a file there; move them away or pass force=True (--force) to "
            "replace them"
        )


def copy_kept(target: Target, staged: Path) -> None:
    """Copy the kept entries of ``target`` into ``staged``.

    Files keep their mode and times; links are copied as links; empty
    directories are recreated.
    """
    for relative in target.kept:
        source = target.source / relative
        destination = staged / relative
        if relative.endswith("/"):
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), destination)
        else:
            shutil.copy2(source, destination)
