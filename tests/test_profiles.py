"""Activation profiles and NAPs vs a plain NumPy computation."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from topojax import profiles as profiles_module
from topojax.profiles import (
    LayerProfile,
    array_batches,
    balanced_sample,
    layout_features,
    naps,
    profile,
    sample_profiles,
    shard_batch,
)

GROUPS = ("zero", "one", "two", "three")  # "two" never occurs: an empty group


def identity_capture(x):
    """The 'model' returns its inputs: activations are known exactly."""
    return {"dense": x["dense"], "conv": x["conv"]}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 23
    x = {
        "dense": rng.normal(size=(n, 5)).astype(np.float32),
        "conv": rng.normal(size=(n, 3, 2, 4)).astype(np.float32),
    }
    group_ids = rng.choice([0, 1, 3], size=n).astype(np.int32)
    return x, group_ids


def numpy_profile(values, group_ids, n_groups):
    values = values.astype(np.float64)
    sums = np.stack([values[group_ids == g].sum(axis=0) for g in range(n_groups)])
    counts = np.bincount(group_ids, minlength=n_groups)
    means = sums / np.maximum(counts, 1).reshape((-1,) + (1,) * (values.ndim - 1))
    present = counts > 0
    centred = np.where(
        present.reshape((-1,) + (1,) * (values.ndim - 1)),
        means - means[present].mean(axis=0),
        0.0,
    )
    return sums, counts, means, centred


def test_profile_matches_numpy(data):
    x, group_ids = data
    result = profile(identity_capture, array_batches(x, group_ids, 8), GROUPS)
    assert list(result) == ["dense", "conv"]
    for name in ("dense", "conv"):
        prof = result[name]
        sums, counts, means, centred = numpy_profile(x[name], group_ids, 4)
        assert prof.layer == name and prof.group_names == GROUPS
        assert prof.sums.dtype == jnp.float32 and prof.counts.dtype == jnp.int32
        np.testing.assert_array_equal(prof.counts, counts)
        np.testing.assert_array_equal(prof.empty, [False, False, True, False])
        np.testing.assert_allclose(prof.sums, sums, atol=1e-5)
        np.testing.assert_allclose(prof.means, means, atol=1e-5)
        assert prof.n_neurons == 4 if name == "conv" else prof.n_neurons == 5

    dense, conv = result["dense"], result["conv"]
    _, _, means, centred = numpy_profile(x["dense"], group_ids, 4)
    np.testing.assert_allclose(naps(dense), centred, atol=1e-5)
    np.testing.assert_allclose(naps(dense, normalize=False), means, atol=1e-5)
    np.testing.assert_allclose(
        naps(dense, spatial="keep"), centred[..., None], atol=1e-5
    )
    np.testing.assert_allclose(layout_features(dense), centred[[0, 1, 3]].T, atol=1e-5)

    _, _, means, centred = numpy_profile(x["conv"], group_ids, 4)  # (G, 3, 2, 4)
    np.testing.assert_allclose(naps(conv), centred.mean(axis=(1, 2)), atol=1e-5)
    keep = centred.reshape(4, 6, 4).transpose(0, 2, 1)  # (G, N, S)
    np.testing.assert_allclose(naps(conv, spatial="keep"), keep, atol=1e-5)
    features = layout_features(conv, spatial="keep")
    expected = keep[[0, 1, 3]].transpose(1, 0, 2).reshape(4, 18)
    np.testing.assert_allclose(features, expected, atol=1e-5)
    # Mean over the non-empty groups is zero: the paper's normalisation.
    np.testing.assert_allclose(np.asarray(naps(conv))[[0, 1, 3]].sum(0), 0.0, atol=1e-5)


def test_profile_step_and_naps_do_not_recompile(data):
    x, group_ids = data
    before = profiles_module._accumulate._cache_size()
    # Batches of 8, 8 and 7 rows: the last one is padded, one program in all.
    profile(identity_capture, array_batches(x, group_ids, 8), GROUPS)
    first = profiles_module._accumulate._cache_size()
    assert first - before <= 1
    shifted = jax.tree.map(lambda v: v + 1.0, x)
    result = profile(
        identity_capture, array_batches(shifted, group_ids[::-1], 8), GROUPS
    )
    assert profiles_module._accumulate._cache_size() == first
    naps(result["dense"])
    before = profiles_module._naps._cache_size()
    naps(LayerProfile(result["dense"].sums * 2.0, result["dense"].counts, "d", GROUPS))
    assert profiles_module._naps._cache_size() == before


def test_kahan_sum_over_many_batches():
    value = np.float32(0.1)
    batches = (
        (np.full((4, 1), value, np.float32), np.zeros(4, np.int32)) for _ in range(2000)
    )
    result = profile(lambda x: {"d": x}, batches, ["g"])["d"]
    exact = 8000 * np.float64(value)
    assert abs(float(result.sums[0, 0]) - exact) <= 1e-6 * exact


def test_nan_activations_name_layer_and_count():
    x = np.ones((6, 3), np.float32)
    x[1, 0] = np.nan
    x[4, :2] = np.inf
    with pytest.raises(ValueError, match=r"'bad': 3 values"):
        profile(
            lambda x: {"good": jnp.ones((6, 1)), "bad": x},
            [(x, np.zeros(6, int))],
            ["g"],
        )


def test_batch_validation_errors():
    x = np.ones((4, 2), np.float32)
    capture = lambda x: {"d": x}  # noqa: E731
    with pytest.raises(ValueError, match=r"out of range \[0, 2\).*\[2, 5\]"):
        profile(capture, [(x, np.array([0, 1, 2, 5]))], ["a", "b"])
    with pytest.raises(ValueError, match="out of range"):
        profile(capture, [(x, np.array([0, -1, 0, 0]))], ["a", "b"])
    with pytest.raises(ValueError, match="batch size 4 but group_ids has 3"):
        profile(capture, [(x, np.array([0, 1, 0]))], ["a", "b"])
    with pytest.raises(ValueError, match="integer"):
        profile(capture, [(x, np.zeros(4, np.float32))], ["a", "b"])
    with pytest.raises(ValueError, match="no neuron axis"):
        profile(lambda x: {"d": x[:, 0]}, [(x, np.zeros(4, int))], ["a"])
    with pytest.raises(ValueError, match="batches is empty"):
        profile(capture, [], ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        profile(capture, [(x, np.zeros(4, int))], ["a", "a"])
    with pytest.raises(ValueError, match="spatial"):
        naps(
            LayerProfile(jnp.zeros((2, 3)), jnp.ones(2, jnp.int32), "d", ("a", "b")),
            spatial="max",
        )
    empty = LayerProfile(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), "d", ("a", "b"))
    np.testing.assert_array_equal(empty.means, 0.0)
    with pytest.raises(ValueError, match="every group is empty"):
        layout_features(empty)


def test_sample_profiles_match_numpy(data):
    x, _ = data
    features = sample_profiles(identity_capture, x)
    np.testing.assert_allclose(features["dense"], x["dense"].T, atol=1e-6)
    conv = x["conv"]  # (E, H, W, C) -> (C, E*H*W), sample-major
    np.testing.assert_allclose(
        features["conv"], conv.transpose(3, 0, 1, 2).reshape(4, -1), atol=1e-6
    )
    mean = sample_profiles(identity_capture, x, spatial="mean")["conv"]
    np.testing.assert_allclose(mean, conv.mean(axis=(1, 2)).T, atol=1e-6)
    bad = {"dense": x["dense"].copy(), "conv": conv}
    bad["dense"][0, :3] = np.nan
    with pytest.raises(ValueError, match=r"'dense': 3 values"):
        sample_profiles(identity_capture, bad)


def test_balanced_sample(key):
    labels = np.array([0] * 5 + [1] * 2 + [3] * 8)
    picked = balanced_sample(key, labels, 3)
    assert np.bincount(labels[picked]).tolist() == [3, 2, 0, 3]
    assert len(set(picked.tolist())) == picked.size
    np.testing.assert_array_equal(picked, balanced_sample(key, labels, 3))
    draws = {tuple(balanced_sample(k, labels, 3)) for k in jax.random.split(key, 8)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="1-D integer"):
        balanced_sample(key, labels.astype(float), 3)


def test_shard_batch_rejects_bad_sizes():
    mesh = jax.make_mesh((1,), ("data",))
    x, ids = shard_batch(np.ones((3, 2)), np.zeros(3, np.int32), mesh)
    assert x.shape == (3, 2) and ids.shape == (3,)


SHARDED_SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from flax import nnx
    from topojax.capture import make_capture
    from topojax.profiles import profile, array_batches, shard_batch
    assert jax.device_count() == 4, jax.devices()

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(2, 3, (3, 3), rngs=rngs)
            self.dense = nnx.Linear(3, 4, rngs=rngs)
        def __call__(self, x):
            return self.dense(nnx.relu(self.conv(x)).mean(axis=(1, 2)))

    rng = np.random.default_rng(1)
    x = rng.normal(size=(26, 4, 4, 2)).astype(np.float32)
    ids = rng.integers(0, 3, size=26).astype(np.int32)
    model_capture = make_capture(Net(nnx.Rngs(0)), ["conv", "dense"])
    devices_seen = []
    def capture(x):
        devices_seen.append(len(x.sharding.device_set) if hasattr(x, "sharding") else 1)
        return model_capture(x)
    mesh = jax.make_mesh((4,), ("data",))
    plain = profile(capture, array_batches(x, ids, 10), ["a", "b", "c"])
    sharded = profile(capture, array_batches(x, ids, 10), ["a", "b", "c"], mesh=mesh)
    assert devices_seen[3:] == [4, 4, 4], devices_seen
    assert len(sharded["conv"].sums.sharding.device_set) == 4
    for name in plain:
        np.testing.assert_array_equal(plain[name].counts, sharded[name].counts)
        np.testing.assert_allclose(plain[name].sums, sharded[name].sums, atol=1e-5)
    assert int(sharded["conv"].counts.sum()) == 26
    assert float(abs(sharded["conv"].sums).sum()) > 0
    try:
        shard_batch(x[:6], ids[:6], mesh)
    except ValueError as error:
        assert "multiple of the 4 devices" in str(error)
    else:
        raise AssertionError("expected a ValueError")
    print("SHARDED-OK")
    """
)


def test_sharded_profile_matches_unsharded():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SHARDED-OK" in result.stdout
