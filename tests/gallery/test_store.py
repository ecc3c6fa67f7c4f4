import zipfile

import numpy as np
import pytest

from topojax.gallery import load_analysis, save_analysis
from topojax.gallery.store import MAX_LOAD_BYTES, load_npz


def assert_same_analysis(a, b):
    assert (a.model_name, a.description, a.params) == (
        b.model_name,
        b.description,
        b.params,
    )
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert (la.name, la.n_neurons, la.methods) == (
            lb.name,
            lb.n_neurons,
            lb.methods,
        )
        assert la.layout_metrics == lb.layout_metrics
        for method in la.methods:
            np.testing.assert_array_equal(la.layouts[method], lb.layouts[method])
        for ga, gb in zip(la.group_sets, lb.group_sets, strict=True):
            assert (ga.name, ga.group_names, ga.description, ga.order) == (
                gb.name,
                gb.group_names,
                gb.description,
                gb.order,
            )
            np.testing.assert_array_equal(ga.counts, gb.counts)
            np.testing.assert_array_equal(ga.values, gb.values)
        assert (la.training is None) == (lb.training is None)
        if la.training is not None:
            ta, tb = la.training, lb.training
            assert (ta.labels, ta.group_names, ta.method, ta.description) == (
                tb.labels,
                tb.group_names,
                tb.method,
                tb.description,
            )
            np.testing.assert_array_equal(ta.values, tb.values)
        np.testing.assert_array_equal(la.top_inputs, lb.top_inputs)
        np.testing.assert_array_equal(la.profile_features, lb.profile_features)


def test_round_trip_without_pickle(tmp_path, hostile_analysis):
    path = save_analysis(hostile_analysis, tmp_path / "run.analysis")
    assert path == tmp_path / "run.analysis" and path.is_file()
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
    assert_same_analysis(hostile_analysis, load_analysis(path))


def test_round_trip_of_nan_metrics_and_order(tmp_path, analysis):
    import dataclasses

    layer = analysis.layers[1]
    group_set = dataclasses.replace(layer.group_sets[0], order=(2, 0, 1))
    layer = dataclasses.replace(
        layer,
        layout_metrics={"random": {"x": float("nan")}},
        group_sets=(group_set,),
        top_inputs=None,
        profile_features=None,
    )
    small = dataclasses.replace(analysis, layers=(layer,), inputs=None)
    loaded = load_analysis(save_analysis(small, tmp_path / "a.npz"))
    assert np.isnan(loaded.layers[0].layout_metrics["random"]["x"])
    assert loaded.layers[0].group_sets[0].order == (2, 0, 1)
    assert loaded.inputs is None and loaded.layers[0].top_inputs is None


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_analysis(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a topojax analysis"):
        load_analysis(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_analysis(tmp_path / "junk.npz")


def test_save_rejects_non_analysis(tmp_path):
    with pytest.raises(TypeError, match="expected an Analysis"):
        save_analysis({"model_name": "x"}, tmp_path / "x.npz")


def test_load_is_bounded(tmp_path, analysis):
    path = save_analysis(analysis, tmp_path / "a.npz")
    assert MAX_LOAD_BYTES == 2 * 1024**3
    with pytest.raises(ValueError, match="limit of 1000 bytes"):
        load_analysis(path, max_bytes=1000)
    assert_same_analysis(analysis, load_analysis(path, max_bytes=10**6))


def test_load_npz_reads_only_the_names_asked_for(tmp_path):
    path = tmp_path / "a.npz"
    np.savez_compressed(path, a=np.arange(6).reshape(2, 3), b=np.ones(4, bool))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("junk.npy", b"\x93NUMPY\x01\x00 not a header")
    arrays = load_npz(path, ["a"])
    assert list(arrays) == ["a"]
    np.testing.assert_array_equal(arrays["a"], np.arange(6).reshape(2, 3))
    assert load_npz(path, ["b"])["b"].dtype == bool
    with pytest.raises(ValueError, match="no array 'c'"):
        load_npz(path, ["c"])
    with pytest.raises(ValueError, match="junk"):
        load_npz(path)
    with pytest.raises(ValueError, match="limit of 8 bytes"):
        load_npz(path, ["a"], max_bytes=8)


def test_load_reads_only_the_arrays_the_header_names(tmp_path, analysis):
    path = save_analysis(analysis, tmp_path / "a.npz")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("extra.npy", b"\x93NUMPY\x01\x00 not a header")
        archive.writestr("extra2.npy", np.lib.format.magic(1, 0) + b"\xff" * 100)
    assert load_analysis(path).model_name == analysis.model_name
