import functools

import jax.numpy as jnp
import numpy as np
import pytest
from test_contract import FAST_OPTIONS  # the contract's shapes: compiles are shared

from topojax.layout import METHODS, METRICS
from topojax.layout.base import check_features, flag_dead, knn, pairwise_distances
from topojax.metrics import layout_report


def test_flag_dead_makes_dead_neurons_mutual_neighbours_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5)).astype(np.float32)
    dead = [2, 7, 9]
    x[dead] = 0.0
    flagged, metric = flag_dead(jnp.asarray(x), "cosine")
    assert metric == "cosine"
    before = np.asarray(pairwise_distances(x, x, "cosine"))
    after = np.asarray(pairwise_distances(flagged, flagged, "cosine"))
    live = np.setdiff1d(np.arange(12), dead)
    # Live-live and live-dead distances are unchanged; dead-dead become 0.
    np.testing.assert_allclose(
        after[np.ix_(live, live)], before[np.ix_(live, live)], atol=1e-6
    )
    np.testing.assert_allclose(after[np.ix_(live, dead)], 1.0, atol=1e-6)
    np.testing.assert_allclose(after[np.ix_(dead, dead)], 0.0, atol=1e-6)
    neighbours, _ = knn(flagged, 2, metric)
    for d in dead:
        assert set(np.asarray(neighbours[d])) == set(dead) - {d}


def test_flag_dead_keeps_euclidean_features():
    x = jnp.zeros((3, 2))
    flagged, metric = flag_dead(x, "euclidean")
    assert metric == "euclidean" and flagged is x


# --- scaling: any finite input gives the layout of its rescaled copy -------------


def test_check_features_scales_in_float64_before_the_cast():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 4))
    reference = np.asarray(check_features(x))
    assert np.abs(reference).max() == 1.0
    for copy in (x * 1e-30, x * 1e30, x * 1e300 / np.abs(x).max(), x.astype(">f8")):
        np.testing.assert_array_equal(np.asarray(check_features(copy)), reference)
    np.testing.assert_array_equal(
        np.asarray(check_features(np.zeros((2, 3)))), np.zeros((2, 3))
    )
    wide = np.asarray(x, dtype=np.longdouble) * np.longdouble("1e400")
    assert np.isfinite(np.asarray(check_features(wide))).all()
    coords = np.array([[1e39, 0.0], [2e39, 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="2 values exceed the float32 range"):
        check_features(coords, metric="euclidean", scale=False)
    x[1, 2] = np.inf
    with pytest.raises(ValueError, match="1 non-finite values"):
        check_features(x * 1e300)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_ignores_the_scale_of_its_input(name, key):
    x = np.random.default_rng(3).normal(size=(16, 6))
    x[4] = 0.0  # a dead neuron
    method = functools.partial(METHODS[name], key=key, **FAST_OPTIONS.get(name, {}))
    # Two copies 330 orders of magnitude apart; unscaled, both would collapse.
    tiny = np.asarray(method(x * 1e-30).coords)
    huge = np.asarray(method(x * (1e300 / np.abs(x).max())).coords)
    assert np.isfinite(tiny).all() and np.ptp(tiny, axis=0).min() > 0.5
    np.testing.assert_array_equal(huge, tiny)


def test_metrics_ignore_the_scale_of_their_input(key):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 6))
    coords = rng.uniform(size=(20, 2))
    for metric in METRICS:
        reference = layout_report(x * 1e-30, coords, key=key, metric=metric)
        assert layout_report(x * 1e30, coords, key=key, metric=metric) == reference
    # Rank-based scores ignore the scale of the coordinates too; overlap is
    # absolute (a distance on the unit square).
    report = layout_report(x, coords * 1e-30, key=key)
    assert report.pop("overlap") == 1.0
    reference = layout_report(x, coords, key=key)
    assert report == {k: v for k, v in reference.items() if k != "overlap"}
