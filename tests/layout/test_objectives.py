import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import enable_x64
from jax.test_util import check_grads

from topojax.layout import objectives as obj

N = 12


def coords64(seed: int = 0, n: int = N) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).uniform(0.05, 0.95, (n, 2)))


def affinities64(n: int = N, k: int = 4, seed: int = 1) -> obj.Affinities:
    rng = np.random.default_rng(seed)
    indices = np.stack(
        [rng.choice(np.delete(np.arange(n), i), k, False) for i in range(n)]
    )
    weights = rng.uniform(0.1, 1.0, (n, k))
    return obj.Affinities(jnp.asarray(indices), jnp.asarray(weights / weights.sum()))


def excess64(n: int = N, k: int = 3, seed: int = 2) -> jax.Array:
    features = np.random.default_rng(seed).normal(size=(n, 5))
    d = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(d, -1.0)
    ranks = np.argsort(np.argsort(d, axis=1), axis=1)
    return obj.rank_excess(jnp.asarray(ranks), k)


def assert_grads(fn, *args):
    # Central finite differences in float64 against reverse-mode gradients.
    check_grads(
        jax.jit(fn), args, order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize(
    "make_objective",
    [
        lambda: functools.partial(obj.attraction, affinities=affinities64(), scale=0.2),
        lambda: functools.partial(
            obj.attraction, affinities=affinities64(), scale=0.2, dof=2.5
        ),
        lambda: functools.partial(obj.repulsion, scale=0.2, dof=0.7),
        lambda: functools.partial(obj.repulsion, scale=0.2, block_size=5),
        lambda: functools.partial(
            obj.sampled_repulsion, offsets=jnp.array([1, 5, 7]), scale=0.3, dof=1.5
        ),
        lambda: functools.partial(obj.soft_core, radius=0.3),
        lambda: functools.partial(obj.soft_core, radius=0.3, block_size=5),
        lambda: functools.partial(
            obj.soft_core_pairs,
            pairs=jnp.array([[0, 1], [2, 3], [4, 9], [5, 6]]),
            radius=0.5,
        ),
        lambda: functools.partial(
            obj.sampled_repulsion,
            offsets=jnp.array([2, 5]),
            scale=0.3,
            near=affinities64().indices,
        ),
        lambda: functools.partial(
            obj.sampled_kl,
            affinities=affinities64(),
            offsets=jnp.array([1, 5, 7]),
            scale=0.3,
            dof=1.5,
            attraction_weight=4.0,
        ),
        lambda: functools.partial(obj.false_neighbours, excess=excess64(), radius=0.4),
        lambda: functools.partial(
            obj.false_neighbours_pairs,
            pairs=jnp.array([[0, 1], [2, 3], [4, 9], [5, 6]]),
            excess=jnp.array([0.1, 0.5, 0.2, 1.0]),
            radius=0.5,
        ),
        lambda: functools.partial(obj.uniformity, key=jax.random.key(0)),
        lambda: functools.partial(
            obj.uniformity, key=jax.random.key(1), shape="disk", n_projections=3
        ),
    ],
    ids=[
        "attraction",
        "attraction-dof",
        "repulsion",
        "repulsion-blocked",
        "sampled-repulsion",
        "soft-core",
        "soft-core-blocked",
        "soft-core-pairs",
        "sampled-repulsion-near",
        "sampled-kl",
        "false-neighbours",
        "false-neighbours-pairs",
        "uniformity-square",
        "uniformity-disk",
    ],
)
def test_gradients_match_finite_differences(make_objective):
    with enable_x64():
        assert_grads(make_objective(), coords64())


@pytest.mark.parametrize("shape", ["square", "disk"])
def test_boundary_gradient_and_zero_inside(shape):
    with enable_x64():
        inside = coords64() * 0.4 + 0.3
        assert float(obj.boundary(inside, shape=shape)) == 0.0
        outside = coords64() * 1.6 - 0.3
        assert float(obj.boundary(outside, shape=shape)) > 0.0
        assert_grads(functools.partial(obj.boundary, shape=shape), outside)


def test_kernel_parameter_gradients():
    with enable_x64():
        y, aff = coords64(), affinities64()

        def kl(scale, dof):
            return obj.attraction(y, aff, scale=scale, dof=dof) + obj.repulsion(
                y, scale=scale, dof=dof
            )

        check_grads(
            jax.jit(kl), (0.2, 1.3), order=1, modes=["rev"], eps=1e-6, rtol=1e-5
        )


def test_map_smoothness_gradient_wrt_activations():
    with enable_x64():
        activations = jnp.asarray(np.random.default_rng(0).normal(size=(9, 6)))
        edges = jnp.array([[0, 1], [1, 2], [3, 4], [2, 5]])
        assert_grads(functools.partial(obj.map_smoothness, edges=edges), activations)
        assert_grads(
            functools.partial(obj.map_smoothness, edges=edges, per_neuron=True),
            activations,
        )


def test_blocked_equals_dense():
    y = coords64().astype(jnp.float32)
    np.testing.assert_allclose(
        obj.repulsion(y, scale=0.2, block_size=5),
        obj.repulsion(y, scale=0.2),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        obj.soft_core(y, radius=0.3, block_size=5),
        obj.soft_core(y, radius=0.3),
        rtol=1e-5,
    )


def test_repulsion_matches_formula_and_sampling_is_exact_with_every_offset():
    with enable_x64():
        y = coords64()
        d2 = np.sum((np.asarray(y)[:, None] - np.asarray(y)[None]) ** 2, -1)
        kernel = (1 + d2 / (1.7 * 0.2**2)) ** -1.7
        expected = np.log(kernel.sum() - N)
        np.testing.assert_allclose(obj.repulsion(y, scale=0.2, dof=1.7), expected)
        every = jnp.arange(1, N)
        np.testing.assert_allclose(
            obj.sampled_repulsion(y, every, scale=0.2, dof=1.7), expected, rtol=1e-12
        )


def test_soft_core_matches_formula_and_pairs():
    with enable_x64():
        y = coords64()
        d2 = np.sum((np.asarray(y)[:, None] - np.asarray(y)[None]) ** 2, -1)
        upper = np.triu(np.maximum(1 - d2 / 0.3**2, 0) ** 2, k=1)
        np.testing.assert_allclose(obj.soft_core(y, radius=0.3), upper.sum() / N)
        pairs = jnp.asarray(np.stack(np.triu_indices(N, 1), 1))
        np.testing.assert_allclose(
            obj.soft_core_pairs(y, pairs, radius=0.3), upper.sum() / N, rtol=1e-12
        )


def test_grid_candidates_cover_close_pairs():
    n, radius = 400, 0.5 / 20
    y = jax.random.uniform(jax.random.key(3), (n, 2))
    found = {
        tuple(sorted(p)) for p in np.asarray(obj.grid_candidate_pairs(y, radius=radius))
    }
    d = np.sqrt(np.sum((np.asarray(y)[:, None] - np.asarray(y)[None]) ** 2, -1))
    close = {(i, j) for i, j in zip(*np.nonzero(np.triu(d < radius, 1)), strict=True)}
    assert len(close) > 20
    assert close <= found


def test_perplexity_affinities_rows_and_entropy():
    rng = np.random.default_rng(0)
    sq = jnp.asarray(np.sort(rng.uniform(0.1, 3.0, (7, 10)), axis=1), jnp.float32)
    indices = jnp.tile(jnp.arange(10), (7, 1))
    aff = obj.perplexity_affinities(indices, sq, 4.0)
    p = np.asarray(aff.weights) * 7
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    entropy = -np.sum(p * np.log(p), axis=1)
    np.testing.assert_allclose(np.exp(entropy), 4.0, rtol=1e-3)
    # Closer neighbours get more weight.
    assert np.all(np.diff(p, axis=1) <= 1e-7)


def test_uniformity_prefers_even_fill_and_quantiles_are_exact():
    side = 20
    grid = (
        np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2) + 0.5
    ) / side
    clumped = 0.5 + 0.3 * (grid - 0.5)
    key = jax.random.key(0)
    assert float(obj.uniformity(jnp.asarray(grid), key)) < 1e-4
    assert float(obj.uniformity(jnp.asarray(clumped), key)) > 10 * float(
        obj.uniformity(jnp.asarray(grid), key)
    )
    samples = np.random.default_rng(0).uniform(size=(60_000, 2))
    levels = jnp.linspace(0.01, 0.99, 9)
    direction = jnp.array([np.cos(2.0), np.sin(2.0)])
    expected = np.quantile(samples @ np.asarray(direction), np.asarray(levels))
    np.testing.assert_allclose(
        obj._square_quantiles(direction, levels), expected, atol=3e-3
    )
    disk = samples[np.sum((samples - 0.5) ** 2, 1) < 0.25]
    expected = np.quantile(disk @ np.asarray(direction), np.asarray(levels))
    np.testing.assert_allclose(
        obj._disk_quantiles(direction, levels), expected, atol=3e-3
    )


def test_map_smoothness_is_lower_for_correlated_neighbours():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(64, 1))
    smooth = signal + 0.1 * rng.normal(size=(64, 8))
    rough = rng.normal(size=(64, 8))
    edges = jnp.asarray(np.stack([np.arange(7), np.arange(1, 8)], 1))
    assert float(obj.map_smoothness(smooth, edges)) < 0.1 * float(
        obj.map_smoothness(rough, edges)
    )


def test_weighted_sum_composes():
    y = coords64().astype(jnp.float32)
    total = obj.weighted_sum(
        [(2.0, functools.partial(obj.soft_core, radius=0.3)), (0.5, obj.boundary)]
    )
    expected = 2.0 * obj.soft_core(y, radius=0.3) + 0.5 * obj.boundary(y)
    np.testing.assert_allclose(total(y), expected, rtol=1e-6)


def test_sampled_kl_and_near_pairs_equal_their_parts():
    with enable_x64():
        y, aff = coords64(), affinities64()
        offsets = jnp.arange(1, N)  # every other neuron: the estimate is exact
        kl = obj.sampled_kl(y, aff, offsets, scale=0.3, dof=1.5, attraction_weight=4.0)
        parts = 4.0 * obj.attraction(
            y, aff, scale=0.3, dof=1.5
        ) + obj.sampled_repulsion(y, offsets, scale=0.3, dof=1.5, near=aff.indices)
        np.testing.assert_allclose(kl, parts, rtol=1e-10)
        # Duplicate-free neighbours: exact pairs + all others = full repulsion.
        np.testing.assert_allclose(
            obj.sampled_repulsion(y, offsets, scale=0.3, near=aff.indices),
            obj.repulsion(y, scale=0.3),
            rtol=1e-10,
        )


def test_false_neighbours_formula_and_pairs():
    with enable_x64():
        y, excess = coords64(), excess64()
        radius = 0.4
        d2 = np.sum((np.asarray(y)[:, None] - np.asarray(y)[None]) ** 2, -1)
        core = np.maximum(1 - d2 / radius**2, 0.0) ** 2
        iu = np.triu_indices(N, 1)
        expected = np.sum(np.asarray(excess)[iu] * core[iu]) / N
        np.testing.assert_allclose(
            obj.false_neighbours(y, excess, radius=radius), expected, rtol=1e-10
        )
        i, j = np.nonzero(~np.eye(N, dtype=bool))
        pairs = jnp.asarray(np.stack([i, j], 1))
        np.testing.assert_allclose(
            obj.false_neighbours_pairs(
                y, pairs, jnp.asarray(np.asarray(excess)[i, j]), radius=radius
            ),
            expected,
            rtol=1e-10,
        )
        # Mutual k-nearest neighbours cost nothing; the weights are symmetric.
        assert np.all(np.asarray(excess) >= 0)
        np.testing.assert_allclose(excess, np.asarray(excess).T)


def test_pair_counts_do_not_overflow_int32():
    # n (n - 1) exceeds int32 from n = 46341; the estimates must stay finite.
    n = 46_500
    rng = np.random.default_rng(0)
    y = jnp.asarray(rng.uniform(size=(n, 2)), jnp.float32)
    near = jnp.asarray((np.arange(n)[:, None] + np.arange(1, 4)) % n)
    offsets = jnp.array([5, 17])
    aff = obj.Affinities(near, jnp.full((n, 3), 1.0 / (3 * n), jnp.float32))
    values = [
        obj.sampled_repulsion(y, offsets, scale=0.01),
        obj.sampled_repulsion(y, offsets, scale=0.01, near=near),
        obj.sampled_kl(y, aff, offsets, scale=0.01),
    ]
    # log Z is about log(n^2 * mean kernel): large and finite.
    assert all(np.isfinite(float(v)) and float(v) > 10 for v in values)
