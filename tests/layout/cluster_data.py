"""Helpers shared by the layout tests: small clusters, tiny inputs, compile counts."""

import contextlib

import jax
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


def assert_tiny_inputs_ok(layout_fn, n: int, key, **options) -> None:
    """``n`` random neurons (and, for ``n = 5``, dead and duplicate ones) give
    finite coordinates in the unit square; a single neuron sits at the centre.

    Uses the contract test's shapes (6 features) so the compilations are shared.
    """
    rng = np.random.default_rng(5)
    cases = [rng.normal(size=(n, 6))]
    if n == 5:
        dead = rng.normal(size=(n, 6))
        dead[::2] = 0.0
        cases += [dead, np.repeat(rng.normal(size=(1, 6)), n, axis=0)]
    for x in cases:
        coords = np.asarray(layout_fn(x.astype(np.float32), key=key, **options).coords)
        assert coords.shape == (n, 2) and np.isfinite(coords).all()
        assert coords.min() >= 0 and coords.max() <= 1
    if n == 1:
        np.testing.assert_allclose(coords, 0.5)


@contextlib.contextmanager
def count_compiles():
    """Collects the duration of every XLA compilation inside the block."""
    compiles = []

    def listener(event: str, duration: float, **_) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
