import zipfile

import numpy as np
import pytest

from topojax.cli import main
from topojax.layout import get_method
from topojax.metrics import trustworthiness


@pytest.fixture
def features_file(tmp_path):
    features = np.random.default_rng(0).normal(size=(24, 5)).astype(np.float32)
    path = tmp_path / "features.npy"
    np.save(path, features)
    return path, features


def test_writes_coords_and_prints_metrics(features_file, tmp_path, capsys, key):
    path, features = features_file
    out = tmp_path / "sub" / "coords.npy"
    assert main(["layout", str(path), "--method", "pca", "--out", str(out)]) == 0
    coords = np.load(out)
    assert coords.shape == (24, 2) and coords.dtype == np.float32
    expected = np.asarray(get_method("pca")(features, key=key).coords)
    np.testing.assert_allclose(coords, expected, atol=1e-6)
    printed = capsys.readouterr().out
    assert "trustworthiness@10" in printed and "overlap" in printed
    score = float(trustworthiness(features, coords))
    assert f"{score:.4f}" in printed
    assert not [p for p in out.parent.iterdir() if p.name != "coords.npy"]  # no temp


def test_seed_metric_and_npz_key(tmp_path, capsys):
    rng = np.random.default_rng(1)
    npz = tmp_path / "layers.npz"
    np.savez(npz, dense=rng.normal(size=(12, 4)), conv=rng.normal(size=(9, 3)))
    outs = []
    for seed in (0, 0, 1):
        out = tmp_path / f"c{len(outs)}.npy"
        argv = ["layout", str(npz), "--key", "conv", "--method", "random"]
        argv += ["--seed", str(seed), "--metric", "euclidean", "--out", str(out)]
        assert main([*argv, "--no-report"]) == 0
        outs.append(np.load(out))
    assert outs[0].shape == (9, 2)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    assert "trustworthiness" not in capsys.readouterr().out


def run_error(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_clear_errors(features_file, tmp_path, capsys):
    path, _ = features_file
    out = str(tmp_path / "c.npy")
    err = run_error(
        ["layout", str(tmp_path / "missing.npy"), "--method", "pca", "--out", out],
        capsys,
    )
    assert "not found" in err and "missing.npy" in err
    err = run_error(["layout", str(path), "--method", "nope", "--out", out], capsys)
    assert "'nope'" in err and "'pca'" in err and "'som'" in err
    flat = tmp_path / "flat.npy"
    np.save(flat, np.ones(5))
    err = run_error(["layout", str(flat), "--method", "pca", "--out", out], capsys)
    assert "2-D" in err and "(5,)" in err
    err = run_error(
        ["layout", str(path), "--method", "pca", "--metric", "l1", "--out", out], capsys
    )
    assert "'l1'" in err
    npz = tmp_path / "two.npz"
    np.savez(npz, a=np.ones((3, 2)), b=np.ones((3, 2)))
    err = run_error(["layout", str(npz), "--method", "pca", "--out", out], capsys)
    assert "--key" in err and "'a'" in err and "'b'" in err
    err = run_error(
        ["layout", str(path), "--method", "pca", "--out", str(tmp_path / "c.txt")],
        capsys,
    )
    assert ".npy" in err
    assert not (tmp_path / "c.npy").exists()


def test_refuses_to_overwrite_without_force(features_file, tmp_path, capsys):
    path, _ = features_file
    out = tmp_path / "c.npy"
    out.write_bytes(b"keep me")
    err = run_error(["layout", str(path), "--method", "pca", "--out", str(out)], capsys)
    assert "--force" in err
    assert out.read_bytes() == b"keep me"
    assert (
        main(["layout", str(path), "--method", "pca", "--out", str(out), "--force"])
        == 0
    )
    assert np.load(out).shape == (24, 2)


def one_line_error(argv, capsys) -> str:
    err = run_error(argv, capsys)
    assert err.startswith("topojax layout: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    return err


def test_hostile_inputs_end_in_one_line(features_file, tmp_path, capsys):
    path, features = features_file
    out = str(tmp_path / "c.npy")
    cases = {}
    cases["empty.npy"] = (b"", "is empty")
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, np.ones((100, 100)))
    cases["truncated.npy"] = (truncated.read_bytes()[:500], "cannot read")
    cases["text.npy"] = (b"hello, not an array", "cannot read")
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        argv = ["layout", str(tmp_path / name), "--method", "pca", "--out", out]
        assert expected in one_line_error(argv, capsys), name
    np.save(tmp_path / "words.npy", np.array([["a", "b"], ["c", "d"]]))
    argv = ["layout", str(tmp_path / "words.npy"), "--method", "pca", "--out", out]
    assert "real numbers" in one_line_error(argv, capsys)
    np.save(tmp_path / "objects.npy", np.array([[{}], [{}]], dtype=object))
    argv = ["layout", str(tmp_path / "objects.npy"), "--method", "pca", "--out", out]
    assert "objects" in one_line_error(argv, capsys)  # never unpickled
    argv = ["layout", str(path), "--method", "pca", "--key", "x", "--out", out]
    assert "only for .npz" in one_line_error(argv, capsys)
    (tmp_path / "taken").mkdir()
    argv = ["layout", str(path), "--method", "pca", "--out", str(tmp_path / "taken")]
    assert ".npy" in one_line_error(argv, capsys)
    (tmp_path / "dir.npy").mkdir()
    argv = ["layout", str(path), "--method", "pca", "--force"]
    err = one_line_error([*argv, "--out", str(tmp_path / "dir.npy")], capsys)
    assert "is a directory" in err
    err = one_line_error(
        [*argv, "--out", str(tmp_path / "empty.npy" / "c.npy")], capsys
    )
    assert "is a file" in err
    argv = ["layout", str(tmp_path), "--method", "pca", "--out", out]
    assert "is a directory" in one_line_error(argv, capsys)
    assert not (tmp_path / "c.npy").exists()


def test_npz_members_are_read_within_bounds(tmp_path, capsys):
    npz = tmp_path / "layers.npz"
    np.savez(npz, small=np.ones((6, 3)), big=np.ones((2, 2)))
    with zipfile.ZipFile(npz) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    members["big.npy"] = (
        b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()
    )
    with zipfile.ZipFile(npz, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    out = tmp_path / "c.npy"
    argv = ["layout", str(npz), "--method", "pca", "--out", str(out), "--no-report"]
    err = one_line_error([*argv, "--key", "big"], capsys)
    assert "limit" in err and "max_bytes" in err
    assert main([*argv, "--key", "small"]) == 0  # the huge member is never read
    assert np.load(out).shape == (6, 2)


def test_huge_float64_values_are_scaled_not_counted_as_non_finite(
    features_file, tmp_path, capsys
):
    path, features = features_file
    reference = tmp_path / "reference.npy"
    assert main(["layout", str(path), "--method", "pca", "--out", str(reference)]) == 0
    huge = tmp_path / "huge.npy"
    np.save(huge, features.astype(np.float64) * 1e39)
    out = tmp_path / "c.npy"
    assert main(["layout", str(huge), "--method", "pca", "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), np.load(reference))
    capsys.readouterr()
    broken = features.astype(np.float64) * 1e300
    broken[[1, 4, 4], [0, 0, 2]] = [np.nan, np.inf, -np.inf]
    np.save(tmp_path / "broken.npy", broken)
    argv = ["layout", str(tmp_path / "broken.npy"), "--method", "pca", "--out"]
    err = one_line_error([*argv, str(tmp_path / "d.npy")], capsys)
    assert "3 non-finite values" in err and "in 2 neurons" in err
