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
