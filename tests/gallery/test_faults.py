"""Fault injection and hostile input: a build interrupted anywhere loses nothing.

The swap tests interrupt a gallery build at every file-system step it takes
(each directory made, file written, rename, exchange, copy, unlink and rmdir),
three ways: a KeyboardInterrupt, an OSError (disk full) and a simulated kill
(every later step fails too and no clean-up runs, as after SIGKILL); two real
SIGKILLs run in a subprocess. After each, the target must be the complete old
or the complete new gallery (or, with the two-rename fallback and a kill
between the renames, missing with the old one recoverable), and the next build
must succeed and leave nothing behind.

The CLI tests feed each bad input of issue 16, and some more, to
`topojax.cli.main` and expect exit status 2, one line on stderr and no
traceback.
"""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import topojax.gallery.build as build_module
import topojax.gallery.target as target_module
from topojax.cli import main
from topojax.gallery import (
    Analysis,
    GroupSet,
    LayerView,
    build_gallery,
    is_gallery,
    load_analysis,
    save_analysis,
)
from topojax.gallery.build import check_target
from topojax.gallery.site import flat_warning

EPOCH = "1700000000"
OLD_FILES = {
    "index.html": b"old index",
    "a/index.html": b"old a",
    "a/maps/1.png": b"old png",
    "assets/x.css": b"old css",
}
NEW_FILES = {
    "index.html": b"new index",
    "a/index.html": b"new a",
    "b/data.js": b"new js",
    "assets/x.css": b"new css",
}
USER_FILES = {
    "CNAME": b"maps.example.org\n",
    ".git/HEAD": b"ref: refs/heads/gh-pages\n",
    ".git/objects/ab/cdef": b"\x00blob",
}


def tree(root):
    if not root.exists():
        return None
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def write(root, files):
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


@pytest.fixture
def site_files(monkeypatch):
    """Skip rendering; the files a build writes are whatever ``holder[0]`` is."""
    holder = [OLD_FILES]
    monkeypatch.setattr(
        build_module,
        "_site_files",
        lambda site, analyses, *_: dict(holder[0]),
    )
    monkeypatch.setattr(build_module, "versions", lambda: {"topojax": "test"})
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    return holder


def build(analysis, out, **kwargs):
    return build_gallery([analysis], out, resolution=8, **kwargs)


@pytest.fixture(scope="module")
def tiny():
    """One layer, two groups: the swap does not depend on the analysis."""
    coords = np.array([[0.1, 0.2], [0.5, 0.9], [0.8, 0.4]])
    groups = GroupSet("g", ("a", "b"), [1, 1], [[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    return Analysis("m", (LayerView("l", 3, {"m": coords}, {}, (groups,)),))


class Killed(BaseException):
    """The simulated end of the process."""


class Faults:
    """Counts file-system steps and fails the ``at``-th one (and, for a kill,
    every later one: a dead process does nothing more)."""

    def __init__(self, at: int, mode: str):
        self.at, self.mode = at, mode
        self.calls = 0
        self.fired = False

    def wrap(self, function):
        def hooked(*args, **kwargs):
            if self.fired and self.mode == "kill":
                raise Killed
            self.calls += 1
            if self.calls == self.at:
                self.fired = True
                if self.mode == "interrupt":
                    raise KeyboardInterrupt
                if self.mode == "error":
                    raise OSError(errno.ENOSPC, "No space left on device")
                raise Killed
            return function(*args, **kwargs)

        return hooked

    def install(self, patch):
        for name in ("_write_file", "_rename", "_exchange"):
            patch.setattr(target_module, name, self.wrap(getattr(target_module, name)))
        for name in ("mkdir", "unlink", "rmdir"):
            patch.setattr(os, name, self.wrap(getattr(os, name)))
        patch.setattr(shutil, "copy2", self.wrap(shutil.copy2))


def references(tmp_path, analysis, site_files, user_files, keep):
    """The trees of the old and the new gallery, built without faults."""
    trees = []
    for name, files in (("old", OLD_FILES), ("new", NEW_FILES)):
        site_files[0] = files
        out = tmp_path / "reference" / name
        build(analysis, out)
        write(out, user_files)
        trees.append(tree(out))
    old, new = trees
    if not keep:
        new = {name: new[name] for name in new if name not in user_files}
    return old, new


SWAPS = ("exchange", "two renames")
FAULT_CASES = [
    *[
        ("kill", scenario, swap)
        for scenario in ("replace", "keep user files", "fresh")
        for swap in SWAPS
    ],
    *[
        ("interrupt", scenario, swap)
        for scenario in ("replace", "keep user files")
        for swap in SWAPS
    ],
    ("error", "replace", "two renames"),
]


@pytest.mark.parametrize(("mode", "scenario", "swap"), FAULT_CASES)
def test_a_build_interrupted_anywhere_leaves_old_or_new(
    tmp_path, tiny, site_files, monkeypatch, swap, mode, scenario
):
    analysis = tiny
    if swap == "two renames":
        monkeypatch.setattr(target_module, "_RENAMEAT2", None)
    keep = scenario == "keep user files"
    user_files = USER_FILES if keep else {}
    old, new = references(tmp_path, analysis, site_files, user_files, keep)
    if scenario == "fresh":
        old = None
    fired_somewhere, missing_seen = False, 0
    for at in range(1, 200):
        parent = tmp_path / f"run{at}"
        target = parent / "gallery"
        if scenario != "fresh":
            parent.mkdir()
            shutil.copytree(tmp_path / "reference" / "old", target, symlinks=True)
        assert tree(target) == old
        site_files[0] = NEW_FILES
        faults = Faults(at, mode)
        with pytest.MonkeyPatch.context() as patch:
            faults.install(patch)
            try:
                build(analysis, target, keep_unknown=keep)
            except (KeyboardInterrupt, OSError, Killed):
                assert faults.fired
        state = tree(target)
        if state is None and old is not None:
            # Only a kill between the two renames leaves the target missing;
            # the old gallery is then what a check and the next build see.
            assert swap == "two renames" and mode == "kill", at
            check_target(target, keep_unknown=keep)
            missing_seen += 1
        else:
            assert state in (old, new), f"step {at}: neither old nor new"
        build(analysis, target, keep_unknown=keep)
        assert tree(target) == new, at
        assert sorted(os.listdir(parent)) == ["gallery"], at
        fired_somewhere |= faults.fired
        if not faults.fired:  # past the last step: every step has been tried
            break
    else:
        pytest.fail("the build never completed")
    assert fired_somewhere and at > 10
    window = swap == "two renames" and mode == "kill" and scenario != "fresh"
    assert missing_seen == (1 if window else 0)  # exactly the documented window


SIGKILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import topojax.gallery.build as build_module
    import topojax.gallery.target as target_module
    from topojax.gallery import build_gallery, synthetic_analysis

    out, hook, at, exchange = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    build_module._site_files = lambda site, analyses, *_: {"index.html": b"new"}
    if exchange == "no":
        target_module._RENAMEAT2 = None
    original = getattr(target_module, hook)
    calls = []

    def killed(*args):
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args)

    setattr(target_module, hook, killed)
    build_gallery([synthetic_analysis(n_neurons=6)], out, resolution=8)
    """
)


@pytest.mark.parametrize(
    ("hook", "at", "exchange"),
    [("_write_file", 2, "yes"), ("_rename", 2, "no")],
    ids=["while writing", "between the two renames"],
)
def test_sigkill_leaves_a_recoverable_state(
    tmp_path, analysis, site_files, hook, at, exchange
):
    site_files[0] = OLD_FILES
    target = tmp_path / "gallery"
    build(analysis, target)
    old = tree(target)
    result = subprocess.run(
        [sys.executable, "-c", SIGKILL_SCRIPT, str(target), hook, str(at), exchange],
        capture_output=True,
        timeout=300,
        env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    leftovers = [p for p in os.listdir(tmp_path) if p != "gallery"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".gallery.tmp-")
    if exchange == "yes":
        assert tree(target) == old
    else:
        assert not target.exists()  # the documented window
        check_target(target)  # sees the old gallery that is set aside
    site_files[0] = NEW_FILES
    build(analysis, target)
    assert sorted(os.listdir(tmp_path)) == ["gallery"]
    assert tree(target)["a/index.html"] == b"new a"


def test_a_live_build_is_left_alone(tmp_path, analysis, site_files):
    target = tmp_path / "gallery"
    build(analysis, target)
    work, staged, descriptor = target_module.start_work(target.resolve())
    try:
        (staged / "half.html").write_text("half")
        build(analysis, target)  # another build runs meanwhile
        assert work.exists() and (staged / "half.html").exists()
    finally:
        target_module.unlock(descriptor)
    build(analysis, target)
    assert sorted(os.listdir(tmp_path)) == ["gallery"]


def test_leftovers_not_ours_are_never_touched(tmp_path, analysis, site_files):
    target = tmp_path / "gallery"
    build(analysis, target)
    lookalikes = {
        ".gallery.tmp-user": {"notes.txt": b"mine"},  # no marker
        ".gallery.old-user": {"notes.txt": b"mine"},  # not a gallery
        ".gallery.tmp-fake": {"topojax-build.json": b'{"target": "other"}'},
    }
    for name, files in lookalikes.items():
        write(tmp_path / name, files)
    build(analysis, target)
    for name, files in lookalikes.items():
        assert tree(tmp_path / name) == files


def test_leftovers_of_the_previous_version_are_restored_or_removed(
    tmp_path, analysis, site_files
):
    target = tmp_path / "gallery"
    build(analysis, target)
    old = tree(target)
    # topojax 0.1 swapped with two renames through `.X.old-*`, unmarked.
    target.rename(tmp_path / ".gallery.old-abc123")
    shutil.copytree(tmp_path / ".gallery.old-abc123", tmp_path / ".gallery.tmp-x9")
    check_target(target)
    site_files[0] = NEW_FILES
    build(analysis, target)
    assert sorted(os.listdir(tmp_path)) == ["gallery"]
    assert tree(target) != old and is_gallery(target)


# --- what may be replaced -------------------------------------------------------


def test_user_files_refuse_keep_or_force(tmp_path, analysis, site_files):
    target = tmp_path / "gallery"
    build(analysis, target)
    write(target, USER_FILES)
    (target / "index.html").write_bytes(b"edited by hand")
    before = tree(target)
    with pytest.raises(FileExistsError) as refused:
        build(analysis, target)
    message = str(refused.value)
    assert "\n" not in message
    for shown in (".git/ (2 entries)", "CNAME", "index.html (modified)"):
        assert shown in message
    assert "--keep-unknown" in message and "--force" in message
    assert tree(target) == before
    # The edited page has the name of a file the gallery writes: no keeping it.
    with pytest.raises(FileExistsError, match=r"cannot keep index\.html"):
        build(analysis, target, keep_unknown=True)
    assert tree(target) == before
    (target / "index.html").unlink()
    build(analysis, target, keep_unknown=True)
    after = tree(target)
    assert all(after[name] == content for name, content in USER_FILES.items())
    manifest = json.loads(after["manifest.json"])
    assert not set(USER_FILES) & set(manifest["files"])  # kept, not adopted
    with pytest.raises(FileExistsError, match="CNAME"):
        build(analysis, target)  # so the next build asks again
    build(analysis, target, force=True)
    assert not set(USER_FILES) & set(tree(target))
    with pytest.raises(ValueError, match="at most one"):
        build(analysis, target, force=True, keep_unknown=True)


def test_links_and_empty_directories_count_as_user_files(
    tmp_path, analysis, site_files
):
    target = tmp_path / "gallery"
    build(analysis, target)
    (target / "empty").mkdir()
    (target / "link").symlink_to(tmp_path)
    with pytest.raises(FileExistsError, match="empty/.*link"):
        build(analysis, target)
    build(analysis, target, keep_unknown=True)
    assert (target / "empty").is_dir() and (target / "link").is_symlink()
    assert (tmp_path / "gallery").exists()  # the link was not followed


def test_many_user_files_are_summarised_on_one_line(tmp_path, analysis, site_files):
    target = tmp_path / "gallery"
    build(analysis, target)
    write(target, {f"note{i}\nx.txt": b"x" for i in range(9)})
    with pytest.raises(FileExistsError) as refused:
        build(analysis, target)
    assert "\n" not in str(refused.value) and "and 4 more" in str(refused.value)


def test_the_checks_come_before_any_rendering(
    tmp_path, analysis, monkeypatch, site_files
):
    def never(*args, **kwargs):
        raise AssertionError("rendered before checking the target")

    target = tmp_path / "gallery"
    build(analysis, target)
    write(target, USER_FILES)
    monkeypatch.setattr(build_module, "describe_site", never)
    with pytest.raises(FileExistsError):
        build(analysis, target)
    monkeypatch.chdir(target / ".git")
    with pytest.raises(ValueError, match="current directory or contains it"):
        build(analysis, target, force=True)
    with pytest.raises(ValueError, match="current directory"):
        build(analysis, ".", force=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # as another user
    with pytest.raises(PermissionError, match="belongs to another user"):
        build(analysis, target, force=True)
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode: (
            os.fspath(path) != os.fspath(tmp_path) and real_access(path, mode)
        ),
    )
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(PermissionError, match="no write permission in"):
        build(analysis, tmp_path / "new", force=True)
    assert sorted(os.listdir(tmp_path)) == ["gallery"]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root may write anywhere",
)
def test_a_read_only_parent_is_refused_before_rendering(
    tmp_path, analysis, monkeypatch, site_files
):
    def never(*args, **kwargs):
        raise AssertionError("rendered before checking the target")

    monkeypatch.setattr(build_module, "describe_site", never)
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="no write permission"):
            build(analysis, parent / "gallery")
    finally:
        parent.chmod(0o755)


# --- the command line -------------------------------------------------------------


def one_line_error(argv, capsys, command="gallery") -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"topojax {command}: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    return err


@pytest.fixture
def saved(tmp_path, analysis):
    return save_analysis(analysis, tmp_path / "model.npz")


def rewrite_header(source, destination, change):
    with np.load(source) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays["__analysis__.json"].tobytes())
    text = change(header)
    if not isinstance(text, bytes):
        text = json.dumps(text).encode()
    arrays["__analysis__.json"] = np.frombuffer(text, dtype=np.uint8)
    np.savez(destination, **arrays)
    return destination


def set_field(path, value):
    def change(header):
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return header

    return change


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("npy", "not a readable .npz analysis"),
        ("text", "not a readable .npz analysis"),
        ("empty", "not a readable .npz analysis"),
        ("directory", "is a directory"),
        ("header is a list", "damaged header"),
        ("layers is a string", "damaged header"),
        ("n_neurons is a string", ""),
        ("group_names is a number", "damaged header"),
        ("methods is a dict of numbers", ""),
        ("training is a list", "damaged header"),
        ("header is not UTF-8", "damaged header"),
        ("header nested 100000 deep", "damaged header"),
        ("header is not JSON", "damaged header"),
        ("header array is float", "damaged header"),
        ("an array is pickled", "never loaded"),
        ("an array declares 8 TB", "limit of"),
        ("an array is cut short", "damaged"),
        ("an unknown compression method", "damaged"),
        ("missing file with a newline", "no analysis file"),
    ],
)
def test_gallery_command_bad_inputs(tmp_path, saved, capsys, case, expected):
    path = tmp_path / "bad.npz"
    if case == "npy":
        path = tmp_path / "bad.npy"
        np.save(path, np.ones((3, 3)))
    elif case == "text":
        path.write_text("hello")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "directory":
        path.mkdir()
    elif case == "header is a list":
        rewrite_header(saved, path, lambda header: [1, 2])
    elif case == "layers is a string":
        rewrite_header(saved, path, set_field(["layers"], "x"))
    elif case == "n_neurons is a string":
        rewrite_header(saved, path, set_field(["layers", 0, "n_neurons"], "abc"))
    elif case == "group_names is a number":
        rewrite_header(
            saved, path, set_field(["layers", 0, "group_sets", 0, "group_names"], 5)
        )
    elif case == "methods is a dict of numbers":
        rewrite_header(saved, path, set_field(["layers", 0, "methods"], {"1": 2}))
    elif case == "training is a list":
        rewrite_header(saved, path, set_field(["layers", 0, "training"], [1]))
    elif case == "header is not UTF-8":
        rewrite_header(saved, path, lambda header: b"\xff\xfe{")
    elif case == "header nested 100000 deep":
        rewrite_header(saved, path, lambda header: b"[" * 100_000)
    elif case == "header is not JSON":
        rewrite_header(saved, path, lambda header: b"{'format': 1}")
    elif case == "header array is float":
        with np.load(saved) as archive:
            arrays = {name: archive[name] for name in archive.files}
        arrays["__analysis__.json"] = arrays["__analysis__.json"].astype(float)
        np.savez(path, **arrays)
    elif case == "an array is pickled":
        with np.load(saved) as archive:
            arrays = {name: archive[name] for name in archive.files}
        arrays["layer0/layout0"] = np.array([{"x": 1}], dtype=object)
        np.savez(path, **arrays)
    elif case == "an array declares 8 TB":
        with np.load(saved) as archive:
            arrays = {name: archive[name] for name in archive.files}
        np.savez(path, **arrays)
        huge_member(path, "layer0/layout0", shape=(10**6, 10**6))
    elif case == "an array is cut short":
        with np.load(saved) as archive:
            arrays = {name: archive[name] for name in archive.files}
        np.savez(path, **arrays)
        huge_member(path, "layer0/layout0", shape=(20, 3))
    elif case == "an unknown compression method":
        shutil.copy(saved, path)
        data = bytearray(path.read_bytes())
        # Method 99 (AES) in every local and central header: zipfile cannot read it.
        for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
            start = data.find(signature)
            while start >= 0:
                data[start + offset : start + offset + 2] = (99).to_bytes(2, "little")
                start = data.find(signature, start + 4)
        path.write_bytes(bytes(data))
    elif case == "missing file with a newline":
        path = tmp_path / "no\nsuch.npz"
    err = one_line_error(["gallery", str(path), "--out", str(tmp_path / "o")], capsys)
    assert expected in err
    assert not (tmp_path / "o").exists()


def huge_member(path, name, shape):
    """Rewrite member ``name`` of the .npz at ``path``: a header declaring
    ``shape`` float64 but only the original (small) data after it."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    original = members[name + ".npy"]
    header_length = 10 + int.from_bytes(original[8:10], "little")
    body = original[header_length:]
    text = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    header = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()
    members[name + ".npy"] = header + body
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)


def test_unknown_arrays_are_never_read(tmp_path, analysis, monkeypatch):
    path = save_analysis(analysis, tmp_path / "model.npz")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("extra.npy", b"\x93NUMPY not even a header")
    huge_member(path, "extra", shape=(10**9, 10**9))
    loaded = load_analysis(path)
    assert loaded.model_name == analysis.model_name


def test_gallery_command_checks_out(tmp_path, saved, capsys, monkeypatch):
    gallery = tmp_path / "site"
    assert main(["gallery", str(saved), "--out", str(gallery)]) == 0
    write(gallery, {"CNAME": b"x"})
    err = one_line_error(["gallery", str(saved), "--out", str(gallery)], capsys)
    assert "CNAME" in err and "--keep-unknown" in err
    assert main(["gallery", str(saved), "--out", str(gallery), "--keep-unknown"]) == 0
    assert (gallery / "CNAME").read_bytes() == b"x"
    monkeypatch.chdir(gallery)
    err = one_line_error(["gallery", str(saved), "--out", ".", "--force"], capsys)
    assert "current directory" in err
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    err = one_line_error(
        ["gallery", str(saved), "--out", str(tmp_path / "file" / "site")], capsys
    )
    assert "not a directory" in err
    with pytest.raises(SystemExit) as usage:  # argparse: usage and one line
        main(["gallery", str(saved), "--out", "x", "--force", "--keep-unknown"])
    assert usage.value.code == 2


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "bad.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        main(["--debug", "gallery", str(tmp_path / "bad.npz"), "--out", "o"])


def test_demo_checks_out_before_training(tmp_path, capsys, monkeypatch):
    import topojax.demo

    def never(*args, **kwargs):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(topojax.demo, "run_demo", never)
    write(tmp_path / "mine", {"thesis.tex": b"x"})
    err = one_line_error(["demo", "--out", str(tmp_path / "mine")], capsys, "demo")
    assert "not a topojax gallery" in err
    assert (tmp_path / "mine" / "thesis.tex").read_bytes() == b"x"


@pytest.mark.parametrize("value", ["abc", "-5", "1.5", "99999999999999", " "])
def test_invalid_source_date_epoch(tmp_path, saved, capsys, monkeypatch, value):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    err = one_line_error(["gallery", str(saved), "--out", str(tmp_path / "o")], capsys)
    assert "SOURCE_DATE_EPOCH" in err and "0..253402300799" in err
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH"):
        build_module.build_date()


def test_invalid_source_date_epoch_does_not_break_the_import():
    code = "import topojax, os; print(os.environ['SOURCE_DATE_EPOCH'])"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        timeout=300,
        env={**os.environ, "SOURCE_DATE_EPOCH": "abc"},
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout.decode().strip() == "abc"  # put back after the import


# --- group sets whose maps would say nothing --------------------------------------


def test_single_group_and_identical_groups_show_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    coords = np.linspace(0.1, 0.9, 8).reshape(4, 2)
    single = GroupSet("one", ("a", "b"), [5, 0], np.zeros((2, 4)))
    same = GroupSet("same", ("a", "b", "c"), [1, 2, 3], np.full((3, 4), 0.1))
    fine = GroupSet("fine", ("a", "b"), [1, 1], np.eye(2, 4))
    assert "Only group" in flat_warning(single)
    assert "identical values" in flat_warning(same)
    assert flat_warning(fine) == ""
    noisy = GroupSet("noisy", ("a", "b"), [1, 1], [[0.3, 0.2], [0.3 + 1e-17, 0.2]])
    assert "identical values" in flat_warning(noisy)
    silent = GroupSet("silent", ("a", "b"), [0, 0], np.zeros((2, 4)))
    assert "Every value" in flat_warning(silent)
    layer = LayerView("l", 4, {"m": coords}, {}, (single, same, fine))
    out = tmp_path / "site"
    build_gallery([Analysis("tiny", (layer,))], out, resolution=8)
    for page in ("index.html", "compare.html"):
        html = (out / "tiny" / "l" / page).read_text()
        assert html.count('<p class="warning" role="note">') == 2
        assert "Only group &#34;a&#34; has inputs" in html


def test_alt_texts_shorten_long_names(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    long_name = "g" * 10_000
    coords = np.linspace(0.1, 0.9, 8).reshape(4, 2)
    groups = GroupSet("set", (long_name, "b"), [1, 1], np.eye(2, 4))
    layer = LayerView("l", 4, {"m": coords}, {}, (groups,))
    out = tmp_path / "site"
    build_gallery([Analysis("tiny", (layer,))], out, resolution=8)
    html = (out / "tiny" / "l" / "index.html").read_text()
    # Only each map's caption keeps the full name; alt texts shorten it.
    assert html.count(long_name) == html.count(f'"group-name">{long_name}<') == 2
    alts = re.findall(r'alt="([^"]*)"', html)
    assert alts and max(len(alt) for alt in alts) < 400
    assert any("g" * 79 + "…" in alt for alt in alts)
