"""Activation capture from Flax NNX and Linen models vs hand-written forward passes."""

import warnings

import flax.linen as nn
import flax.linen.activation
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.nn import relu
from jax.numpy import tanh

import topojax
from topojax.capture import (
    capture,
    list_layers,
    make_capture,
    make_state_capture,
    post_activation_layers,
)

# --------------------------------------------------------------------------- #
# NNX models
# --------------------------------------------------------------------------- #


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [nnx.Linear(6, 8, rngs=rngs), nnx.Linear(8, 4, rngs=rngs)]
        )
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        h = self.drop(nnx.relu(self.layers[0](x)))
        h = self.drop(self.bn(h))
        return self.layers[1](h)


class CNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 3, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(3, 5, (3, 3), rngs=rngs)
        self.head = nnx.Linear(5, 2, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.conv1(x))
        h = nnx.relu(self.conv2(h))
        return self.head(h.mean(axis=(1, 2)))


@jax.jit
def conv_same(x, kernel, bias):
    out = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return out + bias.reshape(1, 1, 1, -1)


def per_unit(vector, like):
    """Broadcast a ``(units,)`` vector against ``(batch, ..., units)``."""
    return vector.reshape((1,) * (like.ndim - 1) + (-1,))


@pytest.fixture(scope="module")
def mlp():
    model = MLP(nnx.Rngs(0))
    # Non-trivial running statistics, to tell them apart from batch statistics.
    model.bn.mean.set_value(jnp.linspace(-0.5, 0.5, 8))
    model.bn.var.set_value(jnp.linspace(0.5, 2.0, 8))
    return model


def test_nnx_list_layers_in_forward_order(mlp):
    x = jnp.ones((3, 6))
    assert list_layers(mlp, x) == [
        "layers.0",
        "layers.0.relu",
        "drop",
        "bn",
        "drop@1",
        "layers.1",
    ]


def test_nnx_mlp_matches_hand_forward_in_inference_mode(mlp):
    x = jax.random.normal(jax.random.key(1), (5, 6))
    layers = ["layers.1", "layers.0", "bn", "drop@1", "layers.0.relu"]
    fn = make_capture(mlp, layers)
    with pytest.warns(UserWarning, match=r"'layers\.0'.*'layers\.0\.relu'"):
        out = fn(x)
    assert list(out) == layers

    dense0, dense1, bn = mlp.layers[0], mlp.layers[1], mlp.bn
    h0 = x @ dense0.kernel[...] + dense0.bias[...][None]
    # Inference mode: dropout is the identity, BatchNorm uses running stats.
    h_bn = (jax.nn.relu(h0) - bn.mean[...][None]) / jnp.sqrt(
        bn.var[...][None] + bn.epsilon
    )
    h_bn = h_bn * bn.scale[...][None] + bn.bias[...][None]
    h1 = h_bn @ dense1.kernel[...] + dense1.bias[...][None]
    np.testing.assert_allclose(out["layers.0"], h0, atol=1e-6)
    np.testing.assert_allclose(out["layers.0.relu"], jax.nn.relu(h0), atol=1e-6)
    np.testing.assert_allclose(out["bn"], h_bn, atol=1e-5)
    np.testing.assert_allclose(out["drop@1"], h_bn, atol=1e-5)
    np.testing.assert_allclose(out["layers.1"], h1, atol=1e-5)
    # The user's model is not switched to eval mode nor its state changed.
    assert mlp.drop.deterministic is False
    assert mlp.bn.use_running_average is False
    np.testing.assert_array_equal(mlp.bn.mean[...], jnp.linspace(-0.5, 0.5, 8))


def test_nnx_no_recompile_and_checkpoint_state_reuses_program(mlp):
    fn = make_capture(mlp, ["layers.0", "layers.1"])
    x = jax.random.normal(jax.random.key(2), (4, 6))
    with pytest.warns(UserWarning, match="pre-activation"):
        first = fn(x)["layers.1"]
    fn(x + 1.0)
    assert fn.func.compiled._cache_size() == 1
    # A "later checkpoint": same structure, other values, same program.
    other = MLP(nnx.Rngs(7))
    again = fn.func(nnx.state(other), x)
    assert fn.func.compiled._cache_size() == 1
    assert not np.allclose(again["layers.1"], first)
    expected = other.layers[0](x)
    np.testing.assert_allclose(again["layers.0"], expected, atol=1e-6)


def test_nnx_cnn_matches_hand_forward():
    model = CNN(nnx.Rngs(3))
    x = jax.random.normal(jax.random.key(4), (2, 6, 6, 1))
    assert list_layers(model, x) == [
        "conv1",
        "conv1.relu",
        "conv2",
        "conv2.relu",
        "head",
    ]
    with pytest.warns(UserWarning) as record:
        out = capture(model, x, ["conv1", "conv2", "conv2.relu"])
    assert sorted(str(w.message)[:13] for w in record) == [
        "layer 'conv1'",
        "layer 'conv2'",
    ]

    @jax.jit
    def forward(x, conv1, conv2):
        h1 = conv_same(x, *conv1)
        return h1, conv_same(jax.nn.relu(h1), *conv2)

    h1, h2 = forward(
        x,
        (model.conv1.kernel[...], model.conv1.bias[...]),
        (model.conv2.kernel[...], model.conv2.bias[...]),
    )
    assert out["conv2"].shape == (2, 6, 6, 5)
    np.testing.assert_allclose(out["conv1"], h1, atol=1e-5)
    np.testing.assert_allclose(out["conv2"], h2, atol=1e-5)
    np.testing.assert_allclose(out["conv2.relu"], jax.nn.relu(h2), atol=1e-5)


def test_unknown_layer_lists_valid_names(mlp):
    fn = make_capture(mlp, ["layers.0", "nope"])
    with pytest.raises(ValueError, match=r"nope.*layers\.0.*drop@1.*layers\.1"):
        fn(jnp.ones((2, 6)))


def test_bad_arguments():
    with pytest.raises(TypeError, match="flax"):
        make_capture(object(), ["a"])
    with pytest.raises(ValueError, match="variables"):
        make_capture(nn.Dense(3), ["a"])
    with pytest.raises(ValueError, match="repeated"):
        make_capture(CNN(nnx.Rngs(0)), ["conv1", "conv1"])
    with pytest.raises(ValueError, match="at least one"):
        make_capture(CNN(nnx.Rngs(0)), [])


# --------------------------------------------------------------------------- #
# Linen model with BatchNorm and Dropout, in inference mode
# --------------------------------------------------------------------------- #


class Block(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.relu(x)


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = Block(name="block")(x, train)
        x = nn.Dropout(0.5, deterministic=not train)(x)
        x = x.mean(axis=(1, 2))
        return nn.Dense(3)(x)


@pytest.fixture(scope="module")
def linen_model():
    model = LinenNet()
    x = jnp.ones((2, 5, 5, 1))
    variables = model.init(jax.random.key(0), x, train=False)
    variables = jax.tree.map(lambda v: v, variables)  # plain mutable copy
    stats = variables["batch_stats"]["block"]["BatchNorm_0"]
    stats["mean"] = jnp.array([0.1, -0.2, 0.3, 0.5])
    stats["var"] = jnp.array([0.5, 2.0, 1.5, 0.25])
    return model, variables


def test_linen_list_layers(linen_model):
    model, variables = linen_model
    names = list_layers(model, jnp.ones((2, 5, 5, 1)), variables=variables, train=False)
    assert names == [
        "block.Conv_0",
        "block.BatchNorm_0",
        "block.BatchNorm_0.relu",
        "block",
        "Dropout_0",
        "Dense_0",
    ]


def test_linen_inference_uses_running_stats_and_keeps_state(linen_model):
    model, variables = linen_model
    before = jax.tree.map(np.array, variables)
    x = jax.random.normal(jax.random.key(5), (3, 5, 5, 1))
    fn = make_capture(
        model,
        ["block.BatchNorm_0", "Dropout_0", "Dense_0"],
        variables=variables,
        train=False,
    )
    out = fn(x)

    params = variables["params"]["block"]
    stats = variables["batch_stats"]["block"]["BatchNorm_0"]
    conv = conv_same(x, params["Conv_0"]["kernel"], params["Conv_0"]["bias"])
    mean, var = per_unit(stats["mean"], conv), per_unit(stats["var"], conv)
    bn = (conv - mean) / jnp.sqrt(var + 1e-5)
    scale, shift = params["BatchNorm_0"]["scale"], params["BatchNorm_0"]["bias"]
    bn = bn * per_unit(scale, bn) + per_unit(shift, bn)
    np.testing.assert_allclose(out["block.BatchNorm_0"], bn, atol=1e-5)
    # Dropout in inference mode is the identity on the ReLU output.
    np.testing.assert_allclose(out["Dropout_0"], jax.nn.relu(bn), atol=1e-5)
    dense = variables["params"]["Dense_0"]
    logits = jax.nn.relu(bn).mean(axis=(1, 2)) @ dense["kernel"] + dense["bias"][None]
    np.testing.assert_allclose(out["Dense_0"], logits, atol=1e-5)

    fn(x * 2.0)
    assert fn.func.compiled._cache_size() == 1
    jax.tree.map(
        np.testing.assert_array_equal, jax.tree.map(np.array, variables), before
    )


def test_linen_training_mode_cannot_mutate_state(linen_model):
    model, variables = linen_model
    with pytest.raises(Exception, match="batch_stats"):
        capture(model, jnp.ones((2, 5, 5, 1)), "block", variables=variables, train=True)


def test_state_capture_for_checkpoints(linen_model):
    model, variables = linen_model
    fn, state = make_state_capture(model, ["Dense_0"], variables=variables, train=False)
    x = jnp.ones((2, 5, 5, 1))
    base = fn(state, x)["Dense_0"]
    shifted = jax.tree.map(lambda v: v, variables)
    shifted["params"]["Dense_0"]["bias"] = variables["params"]["Dense_0"]["bias"] + 1.0
    np.testing.assert_allclose(fn(shifted, x)["Dense_0"], base + 1.0, atol=1e-6)
    assert fn.compiled._cache_size() == 1


# --------------------------------------------------------------------------- #
# Activation functions as layers
# --------------------------------------------------------------------------- #


class Twice(nnx.Module):
    """No parameters: two ReLUs whose inputs are no submodule's output."""

    def __call__(self, x):
        return nnx.relu(nnx.relu(x - 1.0) - 0.5)


class Naming(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.dense = nnx.Linear(3, 3, rngs=rngs)
        self.block = Twice()
        self.relu = nnx.Linear(3, 3, rngs=rngs)  # an attribute named "relu"

    def __call__(self, x):
        h = jax.nn.silu(self.dense(x))
        h = jax.nn.swish(self.dense(h))  # shared weights: the second call
        h = self.relu(self.block(h))
        return nnx.relu(h * 2.0).sum(axis=1)


def test_activation_names_sources_repeats_and_collisions():
    model = Naming(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 3))
    expected = [
        "dense",
        "dense.silu",
        "dense@1",
        "dense.swish",
        "block.relu",
        "block.relu@1",
        "block",
        "relu",
        "relu@1",
    ]
    assert list_layers(model, x) == expected
    assert list_layers(model, x) == expected  # stable across traces
    out = capture(model, x, ["dense.swish", "block.relu@1", "relu@1"])
    dense = model.dense
    h = jax.nn.silu(dense(x))
    h = jax.nn.silu(dense(h))
    np.testing.assert_allclose(out["dense.swish"], h, atol=1e-6)
    inner = jax.nn.relu(jax.nn.relu(h - 1.0) - 0.5)
    np.testing.assert_allclose(out["block.relu@1"], inner, atol=1e-6)
    np.testing.assert_allclose(
        out["relu@1"], jax.nn.relu(model.relu(inner) * 2.0), atol=1e-6
    )


class ImportedRelu(nnx.Module):
    """Calls ``relu`` imported by name (``from jax.nn import relu``)."""

    def __init__(self, rngs: nnx.Rngs):
        self.dense = nnx.Linear(3, 4, rngs=rngs)
        self.out = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(relu(self.dense(x)))


class LinenImported(nn.Module):
    """``tanh`` imported from jax.numpy, ``nn.relu`` from Linen, at the root."""

    @nn.compact
    def __call__(self, x):
        h = tanh(nn.Dense(4)(x))
        h = nn.relu(nn.Dense(4)(h))
        return nn.Dense(2)(h)


def test_imported_activation_names_are_layers():
    x = jax.random.normal(jax.random.key(2), (5, 3))
    model = ImportedRelu(nnx.Rngs(0))
    assert list_layers(model, x) == ["dense", "dense.relu", "out"]
    out = capture(model, x, "dense.relu")
    expected = jax.nn.relu(model.dense(x))
    np.testing.assert_allclose(out["dense.relu"], expected, atol=1e-6)

    linen_model = LinenImported()
    variables = linen_model.init(jax.random.key(3), x)
    assert list_layers(linen_model, x, variables=variables) == [
        "Dense_0",
        "Dense_0.tanh",
        "Dense_1",
        "Dense_1.relu",
        "Dense_2",
    ]
    with pytest.warns(UserWarning) as record:
        out = capture(linen_model, x, ["Dense_0.tanh", "Dense_1"], variables=variables)
    assert [str(w.message) for w in record] == [
        "layer 'Dense_1' is the pre-activation output of a Dense that feeds relu; "
        "capture 'Dense_1.relu' for what the neurons emit"
    ]
    dense0 = variables["params"]["Dense_0"]
    expected = jnp.tanh(x @ dense0["kernel"] + dense0["bias"][None])
    np.testing.assert_allclose(out["Dense_0.tanh"], expected, atol=1e-6)


SEEN_IN_TRACE: list[tuple[object, ...]] = []


class Failing(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.dense = nnx.Linear(3, 3, rngs=rngs)

    def __call__(self, x):
        h = relu(self.dense(x))
        SEEN_IN_TRACE.append((relu, jax.nn.relu, nnx.relu, jnp.tanh, Failing.__call__))
        raise RuntimeError(f"forward failed on {h.shape}")


def patchable_objects():
    return (
        jax.nn.relu,
        jax.nn.gelu,
        jax.nn.softmax,
        jnp.tanh,
        nnx.relu,
        nn.relu,
        flax.linen.activation.relu,
        globals()["relu"],
        globals()["tanh"],
        Failing.__call__,
        nnx.Linear.__call__,
    )


def test_patches_are_restored_after_trace_and_after_an_error():
    before = patchable_objects()
    SEEN_IN_TRACE.clear()
    with pytest.raises(RuntimeError, match="forward failed"):
        list_layers(Failing(nnx.Rngs(0)), jnp.ones((2, 3)))
    # During the trace the functions were the recording wrappers ...
    (during,) = SEEN_IN_TRACE
    assert all(a is not b for a, b in zip(during, before[:4], strict=False))
    assert during[4] is not before[9]
    # ... and afterwards every patched object is the original again.
    after = patchable_objects()
    assert all(a is b for a, b in zip(after, before, strict=True))
    list_layers(ImportedRelu(nnx.Rngs(0)), jnp.ones((2, 3)))
    assert all(a is b for a, b in zip(patchable_objects(), before, strict=True))


class Classifier(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(3, 4, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.out = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        h = self.drop(nnx.tanh(self.hidden(x)))
        return nnx.log_softmax(self.out(h))


def test_post_activation_layers_rule():
    x = jnp.ones((2, 3))
    model = Classifier(nnx.Rngs(0))
    assert list_layers(model, x) == [
        "hidden",
        "hidden.tanh",
        "drop",
        "out",
        "out.log_softmax",
    ]
    assert post_activation_layers(model, x) == ["hidden.tanh"]
    assert topojax.post_activation_layers is post_activation_layers
    # block ends in a relu: its name replaces that relu's ("block.relu@1").
    assert post_activation_layers(Naming(nnx.Rngs(0)), x) == [
        "dense.silu",
        "dense.swish",
        "block.relu",
        "block",
        "relu@1",
    ]
    # Activations held as values are not seen: every hidden submodule is kept.
    sequential = nnx.Sequential(
        nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(4, 2, rngs=nnx.Rngs(1))
    )
    assert list_layers(sequential, x) == ["layers.0", "layers.2"]
    assert post_activation_layers(sequential, x) == ["layers.0"]
    model, variables = LinenImported(), LinenImported().init(jax.random.key(0), x)
    assert post_activation_layers(model, x, variables=variables) == [
        "Dense_0.tanh",
        "Dense_1.relu",
    ]


def test_no_warning_for_post_activation_outputs(mlp):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = capture(mlp, jnp.ones((2, 6)), ["layers.0.relu", "bn", "layers.1"])
    assert float(out["layers.0.relu"].min()) >= 0.0
