import numpy as np
import pytest
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import pdist

from topojax.gallery.order import cosine_distances, group_order


def test_matches_scipy_reference_on_generic_values():
    values = np.random.default_rng(0).normal(size=(7, 30))
    expected = leaves_list(
        linkage(pdist(values, metric="cosine"), method="average", optimal_ordering=True)
    )
    assert group_order(values) == tuple(int(i) for i in expected)


def test_similar_groups_are_adjacent():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 40))
    # Groups 0, 2, 4 resemble `a`; 1, 3, 5 resemble `b`.
    values = np.stack([a, b, a, b, a, b]) + 0.05 * rng.normal(size=(6, 40))
    order = group_order(values)
    assert sorted(order) == list(range(6))
    first_three = {i % 2 for i in order[:3]}
    last_three = {i % 2 for i in order[3:]}
    assert len(first_three) == 1 and len(last_three) == 1


@pytest.mark.parametrize("n_groups", [1, 2])
def test_one_or_two_groups_keep_their_order(n_groups):
    values = np.random.default_rng(2).normal(size=(n_groups, 5))
    assert group_order(values) == tuple(range(n_groups))


def test_identical_and_zero_rows():
    assert group_order(np.ones((4, 3))) == (0, 1, 2, 3)
    assert group_order(np.zeros((4, 3))) == (0, 1, 2, 3)
    values = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.1]])
    order = group_order(values)
    assert sorted(order) == [0, 1, 2, 3]
    # The two zero rows and the two near-identical rows end up side by side.
    assert abs(order.index(0) - order.index(2)) == 1
    assert abs(order.index(1) - order.index(3)) == 1


def test_cosine_distances_with_zero_rows_are_finite():
    distances = cosine_distances(np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]))
    assert np.all(np.isfinite(distances))
    np.testing.assert_allclose(distances, [[0, 1, 1], [1, 0, 2], [1, 2, 0]])


@pytest.mark.parametrize("values", [np.zeros(3), np.zeros((0, 3)), [[np.nan, 1.0]]])
def test_rejects_bad_values(values):
    with pytest.raises(ValueError, match="values must"):
        group_order(values)
