"""The layout contract, checked for every method in METHODS and a few chains.

New methods are picked up automatically. Methods with many iterations get small
iteration options from FAST_OPTIONS (only options their signature accepts).
"""

import inspect

import jax
import numpy as np
import pytest
from cluster_data import count_compiles

from topojax.layout import METHODS, Layout, get_method

# Small iteration counts keyed per method, so the whole file stays fast.
FAST_OPTIONS: dict[str, dict] = {
    "som": {"n_iter": 40},
    "graph": {"n_iter": 5},
    "tsne": {"n_iter": 30, "exaggeration_iter": 10},
    "umap": {"n_epochs": 20},
    "swarm": {"n_steps": 20},
    "optimize": {"n_steps": 20},
}
# Fewer still for the eager (jax.disable_jit) runs of test_jit_equals_eager.
EAGER_OPTIONS: dict[str, dict] = {
    "som": {"n_iter": 5},
    "graph": {"n_iter": 2},
    "tsne": {"n_iter": 6, "exaggeration_iter": 3},
    "umap": {"n_epochs": 3},
    "swarm": {"n_steps": 3},
    "optimize": {"n_steps": 3},
}
CANDIDATE_CHAINS = ("umap+swarm", "tsne+swarm", "graph+swarm", "pca+swarm")
CHAINS = [c for c in CANDIDATE_CHAINS if all(p in METHODS for p in c.split("+"))]
METHOD_NAMES = sorted(METHODS)
# Chains get the cheap checks only: their parts are checked one by one above.
NAMES = METHOD_NAMES + CHAINS[:2]
N_NEURONS, N_FEATURES = 16, 6


def accepts(name: str):
    return inspect.signature(get_method(name)).parameters


def run(name: str, features, key, **kwargs) -> Layout:
    options = {
        k: v for k, v in FAST_OPTIONS.get(name, {}).items() if k in accepts(name)
    }
    return get_method(name)(features, key=key, **{**options, **kwargs})


def check_coords(layout: Layout, n: int) -> np.ndarray:
    assert isinstance(layout, Layout)
    coords = np.asarray(layout.coords)
    assert coords.shape == (n, 2)
    assert coords.dtype == np.float32
    assert np.isfinite(coords).all()
    assert coords.min() >= 0.0 and coords.max() <= 1.0
    return coords


def features(seed: int, n: int = N_NEURONS, d: int = N_FEATURES) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_shape_range_and_determinism(name, key):
    x = features(0)
    layout = run(name, x, key)
    first = check_coords(layout, N_NEURONS)
    again = check_coords(run(name, x, key), N_NEURONS)
    np.testing.assert_array_equal(first, again)
    # Rescaled to the unit square: at least one axis spans all of [0, 1].
    spans = np.isclose(first.min(axis=0), 0.0, atol=1e-6) & np.isclose(
        first.max(axis=0), 1.0, atol=1e-6
    )
    assert spans.any()
    assert layout.method == name


@pytest.mark.parametrize("name", NAMES)
def test_no_recompile_for_new_values(name):
    run(name, features(3), jax.random.key(1))
    with count_compiles() as compiles:
        check_coords(run(name, features(4), jax.random.key(2)), N_NEURONS)
    assert compiles == [], f"{name} compiled {len(compiles)} times on a second call"


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_tiny_inputs(name, n, key):
    coords = check_coords(run(name, features(5, n=n), key), n)
    if n == 1:
        np.testing.assert_allclose(coords, 0.5)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_jit_equals_eager(name, key):
    # Eager runs dispatch every primitive one by one: a few iterations suffice.
    x = features(2, n=5)
    options = {
        k: v for k, v in EAGER_OPTIONS.get(name, {}).items() if k in accepts(name)
    }
    compiled = check_coords(run(name, x, key, **options), 5)
    with jax.disable_jit():
        eager = check_coords(run(name, x, key, **options), 5)
    np.testing.assert_allclose(compiled, eager, atol=1e-5)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_dead_neurons(name, key):
    # All-zero profiles (cosine: no direction). Other metrics would each cost a
    # compile per method; they are covered by each method's own tests.
    x = features(6)
    x[::3] = 0.0
    check_coords(run(name, x, key), N_NEURONS)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_duplicate_rows(name, key):
    x = features(7)
    x[N_NEURONS // 2 :] = x[: N_NEURONS // 2]
    check_coords(run(name, x, key), N_NEURONS)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise(name, key):
    x = features(8)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        run(name, bad, key)
    with pytest.raises(ValueError, match="2-D"):
        run(name, x[:, 0], key)
    with pytest.raises(ValueError, match="metric 'manhattan'"):
        run(name, x, key, metric="manhattan")


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="'nope'") as error:
        get_method("nope")
    for name in METHODS:
        assert repr(name) in str(error.value)
    with pytest.raises(ValueError, match="'pca\\+nope'"):
        get_method("pca+nope")
