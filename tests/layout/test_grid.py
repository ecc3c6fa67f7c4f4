import itertools

import jax
import numpy as np
import pytest

from topojax.layout import get_method
from topojax.layout.grid import (
    grid_cells,
    grid_edges,
    grid_layout,
    grid_side,
    snap_quality,
    snap_to_grid,
)


@pytest.mark.parametrize("n", [1, 2, 5, 16, 17, 50])
@pytest.mark.parametrize("exact", [True, False])
def test_snap_is_a_bijection_to_cells(n, exact):
    coords = np.random.default_rng(n).uniform(size=(n, 2))
    snapped = np.asarray(snap_to_grid(coords, exact=exact).coords)
    assert snapped.shape == (n, 2) and snapped.dtype == np.float32
    assert snapped.min() >= 0 and snapped.max() <= 1
    if n == 1:
        np.testing.assert_allclose(snapped, 0.5)
        return
    # Every neuron sits on a lattice point of spacing 1 / (side - 1) per axis
    # (after the rescale) and no two share one.
    spans = [np.unique(np.round(snapped[:, a], 5)) for a in (0, 1)]
    for values in spans:
        steps = np.diff(values)
        if len(steps):
            np.testing.assert_allclose(steps, steps[0], rtol=1e-4)
        assert len(values) <= grid_side(n)
    assert len(np.unique(np.round(snapped, 5), axis=0)) == n


def test_exact_assignment_is_optimal():
    n = 5
    coords = np.random.default_rng(0).uniform(size=(n, 2))
    unit = (coords - coords.min(0)) / (coords.max(0) - coords.min(0))
    cells = grid_cells(n)
    best = min(
        sum(np.sum((unit[i] - cells[c]) ** 2) for i, c in enumerate(choice))
        for choice in itertools.permutations(range(len(cells)), n)
    )
    snapped = np.asarray(snap_to_grid(coords, exact=True).coords)
    # Map the rescaled result back to the cells it used.
    chosen = [
        int(
            np.argmin(
                np.sum(
                    (cells - cells.min(0) - p * (cells.max(0) - cells.min(0))) ** 2, 1
                )
            )
        )
        for p in snapped
    ]
    cost = sum(np.sum((unit[i] - cells[c]) ** 2) for i, c in enumerate(chosen))
    np.testing.assert_allclose(cost, best, rtol=1e-6)


def test_bisection_is_close_to_optimal_and_keeps_order():
    coords = np.random.default_rng(1).uniform(size=(300, 2))
    exact = np.asarray(snap_to_grid(coords, exact=True).coords)
    approx = np.asarray(snap_to_grid(coords, exact=False).coords)
    unit = (coords - coords.min(0)) / (coords.max(0) - coords.min(0))
    cost = lambda c: np.mean(np.sum((c - unit) ** 2, 1))  # noqa: E731
    # Measured 2.2x the optimal squared displacement on uniform random points
    # (1.3x on optimised layouts, which are more even).
    assert cost(approx) < 3.0 * cost(exact)
    assert np.corrcoef(approx[:, 0], coords[:, 0])[0, 1] > 0.95
    assert np.corrcoef(approx[:, 1], coords[:, 1])[0, 1] > 0.95


def test_large_approximate_snap_is_a_bijection():
    n = 5000
    coords = np.asarray(jax.random.uniform(jax.random.key(0), (n, 2)))
    snapped = np.asarray(snap_to_grid(coords).coords)
    assert len(np.unique(np.round(snapped, 5), axis=0)) == n


def test_grid_method_and_chain(key):
    features = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    layout = get_method("pca+grid")(features, key=key)
    assert layout.method == "pca+grid"
    assert len(np.unique(np.round(np.asarray(layout.coords), 5), axis=0)) == 20
    direct = grid_layout(features, key=key, init=np.asarray(layout.coords))
    np.testing.assert_allclose(direct.coords, layout.coords)
    with pytest.raises(ValueError, match="init must have shape"):
        grid_layout(features, key=key, init=np.zeros((3, 2)))


def test_snap_quality_reports_before_and_after():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 4)).astype(np.float32)
    before = rng.uniform(size=(40, 2)).astype(np.float32)
    after = np.asarray(snap_to_grid(before).coords)
    quality = snap_quality(features, before, after)
    assert set(quality) == {
        "trustworthiness_before",
        "trustworthiness_after",
        "knn_recall_before",
        "knn_recall_after",
        "kept_map_neighbours",
    }
    assert all(0.0 <= v <= 1.0 for v in quality.values())
    same = snap_quality(features, before, before)
    assert same["kept_map_neighbours"] == 1.0


def test_grid_edges_are_adjacent_cells():
    edges = grid_edges(7)  # 3 x 3 grid, cells 0..6 used
    cells = grid_cells(7)
    steps = np.abs(cells[edges[:, 0]] - cells[edges[:, 1]]).sum(axis=1)
    np.testing.assert_allclose(steps, 1.0 / 3)
    assert len(edges) == 8  # 4 horizontal + 4 vertical among 7 cells
