"""Panel order of the groups: the leaf order of a dendrogram of their values.

The paper (digest section 5.1) places the groups' maps left to right in the leaf
order of ``scipy.cluster.hierarchy.linkage(method="average",
optimal_ordering=True)`` on the cosine distances between the groups' NAP vectors,
so groups that activate the layer alike sit side by side.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

__all__ = ["cosine_distances", "group_order"]


def cosine_distances(values: np.ndarray) -> np.ndarray:
    """Cosine distances between the rows of ``values``, defined for zero rows.

    Args:
        values: ``(n_groups, n_neurons)`` finite values.

    Returns:
        ``(n_groups, n_groups)`` symmetric distances in ``[0, 2]`` with a zero
        diagonal. A zero row is at distance 0 from other zero rows and 1 (the
        distance of orthogonal vectors) from every other row.
    """
    values = np.asarray(values, dtype=np.float64)
    norms = np.linalg.norm(values, axis=1)
    zero = norms <= 1e-12 * max(1.0, float(norms.max(initial=0.0)))
    units = values / np.where(zero, 1.0, norms)[:, None]
    distances = 1.0 - units @ units.T
    distances[zero, :] = 1.0
    distances[:, zero] = 1.0
    distances[np.ix_(zero, zero)] = 0.0
    distances = np.clip((distances + distances.T) / 2, 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    return distances


def group_order(values: np.ndarray) -> tuple[int, ...]:
    """Dendrogram leaf order of the groups (average linkage, optimal ordering).

    Args:
        values: ``(n_groups, n_neurons)`` finite values, one row per group.

    Returns:
        A permutation of ``range(n_groups)``: the left-to-right panel order.
        One or two groups, or groups that are all alike, keep their order.

    Raises:
        ValueError: if ``values`` is not 2-D with at least one row, or not finite.

    Example:
        >>> group_order(np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]]))
        (1, 2, 0)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1:
        raise ValueError(
            f"values must be (n_groups, n_neurons) with n_groups >= 1; got shape "
            f"{values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError("values must be finite to order the groups")
    n_groups = values.shape[0]
    if n_groups <= 2:
        return tuple(range(n_groups))
    condensed = squareform(cosine_distances(values), checks=False)
    if not np.any(condensed > 0):
        return tuple(range(n_groups))
    tree = linkage(condensed, method="average", optimal_ordering=True)
    return tuple(int(i) for i in leaves_list(tree))
