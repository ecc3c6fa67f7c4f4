import jax
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr
from sklearn.manifold import trustworthiness as sklearn_trustworthiness

from topojax.metrics import (
    continuity,
    distance_spearman,
    ground_truth_recall,
    knn_recall,
    layout_report,
    overlap,
    trustworthiness,
)
from topojax.metrics.layout_quality import _rank_score

N = 90


def data(seed: int = 0, n: int = N):
    """Features and a noisy 2-D view of them (no ties)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 7)).astype(np.float32)
    coords = (features[:, :2] + 0.7 * rng.normal(size=(n, 2))).astype(np.float32)
    return features, coords


def unit_rows(x: np.ndarray, metric: str) -> np.ndarray:
    """What `prepare` does, in float64: cosine/correlation -> unit rows."""
    x = x.astype(np.float64)
    if metric == "correlation":
        x = x - x.mean(axis=1, keepdims=True)
    if metric != "euclidean":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x


@pytest.mark.parametrize(
    ("metric", "k"),
    [("cosine", 1), ("cosine", 10), ("euclidean", 10), ("correlation", 4)],
)
def test_trustworthiness_and_continuity_match_sklearn(metric, k):
    # Seed 2: no two distances from one neuron closer than 1e-6 relative (seed 0
    # has a pair 4e-8 apart, below float32 resolution, so the rank order there
    # is a coin toss for any float32 code).
    features, coords = data(2)
    expected = sklearn_trustworthiness(features, coords, n_neighbors=k, metric=metric)
    got = trustworthiness(features, coords, k, metric=metric)
    np.testing.assert_allclose(float(got), expected, atol=1e-5)
    # Continuity is trustworthiness with the two spaces swapped.
    expected = sklearn_trustworthiness(
        coords, unit_rows(features, metric), n_neighbors=k
    )
    got = continuity(features, coords, k, metric=metric)
    np.testing.assert_allclose(float(got), expected, atol=1e-5)


def test_perfect_and_shuffled_layouts():
    features, _ = data(1)
    plane = features[:, :2]
    assert float(trustworthiness(plane, plane, 5, metric="euclidean")) == pytest.approx(
        1.0
    )
    assert float(continuity(plane, plane, 5, metric="euclidean")) == pytest.approx(1.0)
    shuffled = np.random.default_rng(2).permutation(plane)
    assert float(trustworthiness(plane, shuffled, 5, metric="euclidean")) < 0.75


def test_blocks_do_not_change_ranks():
    features, coords = data(3)
    kwargs = dict(k=5, rank_metric="cosine", neighbour_metric="euclidean")
    counted = np.ones(N, np.float32)
    whole = _rank_score(features, coords, counted, block_size=N, **kwargs)
    blocked = _rank_score(features, coords, counted, block_size=7, **kwargs)
    assert float(whole) == pytest.approx(float(blocked), abs=1e-6)


def numpy_trustworthiness(features, coords, k, counted):
    """Venna & Kaski's formula, outer sum and ``n`` over the ``counted`` rows."""
    n = len(features)
    norms = np.linalg.norm(features.astype(np.float64), axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)  # dead rows: distance 1
    dist = 1.0 - unit @ unit.T
    np.fill_diagonal(dist, np.inf)
    ranks = np.argsort(np.argsort(dist, axis=1, kind="stable"), axis=1) + 1
    map_dist = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(map_dist, np.inf)
    nbrs = np.argsort(map_dist, axis=1, kind="stable")[:, :k]
    excess = np.maximum(np.take_along_axis(ranks, nbrs, axis=1) - k, 0).sum(axis=1)
    total = excess[counted].sum()
    return 1.0 - 2.0 * total / (counted.sum() * k * (2 * n - 3 * k - 1))


def test_dead_neurons_are_left_out_of_the_averages():
    # A dead neuron is at cosine distance 1 from everyone: its neighbours are
    # undefined (scikit-learn ranks them by index), so its own row does not
    # count; where dead neurons sit among themselves then changes nothing.
    features, coords = data(2)
    features[[5, 6, 7, 40, 50, 60, 70, 80]] = 0.0
    live = np.abs(features).sum(axis=1) > 0
    expected = numpy_trustworthiness(features, coords, 5, live)
    got = float(trustworthiness(features, coords, 5))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Dead neurons set apart from the live ones: stacked on one spot (which
    # index tie-breaking used to reward) or spread out, the scores are equal.
    stacked, spread = coords.copy(), coords.copy()
    stacked[~live] = 100.0
    spread[~live] = 100.0 + np.arange(8)[::-1, None] * np.array([0.3, 0.1])
    for score in (trustworthiness, continuity, knn_recall):
        assert float(score(features, stacked, 5)) == pytest.approx(
            float(score(features, spread, 5)), abs=1e-6
        )
    # scikit-learn's convention (every row) differs here:
    assert sklearn_trustworthiness(
        features, stacked, n_neighbors=5, metric="cosine"
    ) != pytest.approx(
        sklearn_trustworthiness(features, spread, n_neighbors=5, metric="cosine"),
        abs=1e-6,
    )


def numpy_recall(a: np.ndarray, b: np.ndarray, k: int) -> float:
    def nbrs(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        return np.argsort(d, axis=1)[:, :k]

    na, nb = nbrs(a), nbrs(b)
    return np.mean([len(set(r) & set(s)) / k for r, s in zip(na, nb, strict=True)])


def test_knn_recall_matches_numpy():
    features, coords = data(4)
    expected = numpy_recall(unit_rows(features, "cosine"), coords, 6)
    assert float(knn_recall(features, coords, 6)) == pytest.approx(expected, abs=1e-6)
    assert float(knn_recall(coords, coords, 6, metric="euclidean")) == pytest.approx(
        1.0
    )


def test_ground_truth_recall():
    _, coords = data(5)
    assert float(ground_truth_recall(coords, coords * 3 + 1, 8)) == pytest.approx(1.0)
    shuffled = np.random.default_rng(6).permutation(coords)
    expected = numpy_recall(coords, shuffled, 8)
    got = float(ground_truth_recall(coords, shuffled, 8))
    assert got == pytest.approx(expected, abs=1e-6)
    assert got < 0.3


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_spearman_all_pairs_matches_scipy(metric, key):
    features, coords = data(7, n=40)
    coords[5] = coords[6]  # ties get average ranks, as in scipy
    expected = spearmanr(pdist(features, metric), pdist(coords)).statistic
    got = distance_spearman(features, coords, key=key, metric=metric)
    np.testing.assert_allclose(float(got), expected, atol=1e-5)


def test_spearman_sampled_pairs(key):
    features, coords = data(8)
    exact = float(distance_spearman(features, coords, key=key))
    sampled = float(distance_spearman(features, coords, key=key, n_pairs=2000))
    again = float(distance_spearman(features, coords, key=key, n_pairs=2000))
    other = float(
        distance_spearman(features, coords, key=jax.random.key(9), n_pairs=2000)
    )
    assert sampled == again  # deterministic for a key
    assert sampled != other
    assert abs(sampled - exact) < 0.05


def test_overlap():
    grid = np.stack(np.meshgrid(np.arange(4), np.arange(4)), -1).reshape(-1, 2) / 3.0
    assert float(overlap(grid)) == 0.0
    crowded = grid.copy()
    crowded[1] = crowded[0] + 0.01  # 0.01 < 0.25 / sqrt(16): both 0 and 1 hidden
    assert float(overlap(crowded)) == pytest.approx(2 / 16)
    assert float(overlap(np.zeros((1, 2)))) == 0.0


def test_layout_report(key):
    features, coords = data(10)
    report = layout_report(features, coords, key=key, true_coords=coords)
    assert set(report) == {
        "k",
        "trustworthiness",
        "continuity",
        "knn_recall",
        "spearman",
        "overlap",
        "gt_recall",
    }
    assert all(isinstance(v, float) for v in report.values())
    assert report["trustworthiness"] == pytest.approx(
        float(trustworthiness(features, coords))
    )
    assert report["gt_recall"] == 1.0
    small = layout_report(features[:7], coords[:7], key=key, k=10)
    assert small["k"] == 3.0
    tiny = layout_report(features[:2], coords[:2], key=key)
    assert np.isnan(tiny["trustworthiness"]) and tiny["overlap"] == 0.0


def test_no_recompile_on_new_values():
    features, coords = data(11)
    trustworthiness(features, coords)
    before = _rank_score._cache_size()
    features, coords = data(12)
    trustworthiness(features, coords)
    assert _rank_score._cache_size() == before


def test_bad_inputs_raise():
    features, coords = data(13)
    with pytest.raises(ValueError, match="one row per neuron"):
        trustworthiness(features, coords[:-1])
    with pytest.raises(ValueError, match="k must be"):
        trustworthiness(features, coords, N // 2)
    with pytest.raises(ValueError, match="k must be"):
        knn_recall(features, coords, N)
    bad = coords.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        overlap(bad)
    with pytest.raises(ValueError, match="metric"):
        continuity(features, coords, metric="manhattan")
    with pytest.raises(ValueError, match="at least 2 neurons"):
        distance_spearman(features[:1], coords[:1], key=jax.random.key(0))
