"""Test data shared by the layout tests: small well-separated clusters."""

import numpy as np

N_PER_CLUSTER, N_FEATURES = 15, 5


def clusters(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian clusters, (45, 5), and their labels."""
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.eye(3, N_FEATURES)
    labels = np.repeat(np.arange(3), N_PER_CLUSTER)
    x = centres[labels] + rng.normal(size=(labels.size, N_FEATURES))
    return x.astype(np.float32), labels


def neighbour_purity(coords: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Fraction of each point's k nearest map neighbours with its own label."""
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    neighbours = np.argsort(d, axis=1)[:, :k]
    return float((labels[neighbours] == labels[:, None]).mean())
