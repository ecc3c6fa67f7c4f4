"""Post-activation capture on the test models of tests/models.py vs hand forwards."""

import warnings

import jax
import jax.numpy as jnp
import models
import numpy as np
import pytest
from flax import nnx

from topojax.capture import (
    capture,
    list_layers,
    make_capture,
    post_activation_layers,
)
from topojax.digits import MLP as DigitsMLP

BATCH = 4


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(1), (BATCH, *models.IMAGE_SHAPE))


# --------------------------------------------------------------------------- #
# FunctionalMLP (NNX): nnx.relu and jax.nn.gelu applied to Linear outputs
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def mlp():
    return models.make_functional_mlp(jax.random.key(0))


def test_mlp_layers(mlp, images):
    assert list_layers(mlp, images) == [
        "hidden1",
        "hidden1.relu",
        "hidden2",
        "hidden2.gelu",
        "out",
    ]
    assert post_activation_layers(mlp, images) == ["hidden1.relu", "hidden2.gelu"]


def test_mlp_post_activation_values_without_warning_or_recompile(mlp, images):
    fn = make_capture(mlp, ["hidden1.relu", "hidden2.gelu"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fn(images)
    flat = images.reshape(BATCH, -1)
    hidden1 = jax.nn.relu(mlp.hidden1(flat))
    assert out["hidden1.relu"].shape == (BATCH, 32)
    assert float(out["hidden1.relu"].min()) == 0.0  # some units are off
    np.testing.assert_allclose(out["hidden1.relu"], hidden1, atol=1e-6)
    expected = jax.nn.gelu(mlp.hidden2(hidden1))
    np.testing.assert_allclose(out["hidden2.gelu"], expected, atol=1e-6)

    fn(images + 0.5)
    assert fn.func.compiled._cache_size() == 1
    other = models.make_functional_mlp(jax.random.key(5))
    again = fn.func(nnx.state(other), images)
    assert fn.func.compiled._cache_size() == 1
    expected = jax.nn.relu(other.hidden1(flat))
    np.testing.assert_allclose(again["hidden1.relu"], expected, atol=1e-6)


def test_mlp_warns_once_for_the_pre_activation_layer(mlp, images):
    with pytest.warns(UserWarning) as record:
        out = capture(mlp, images, ["hidden1", "hidden1.relu", "out"])
    assert [str(w.message) for w in record] == [
        "layer 'hidden1' is the pre-activation output of a Linear that feeds relu; "
        "capture 'hidden1.relu' for what the neurons emit"
    ]
    expected = mlp.hidden1(images.reshape(BATCH, -1))
    np.testing.assert_allclose(out["hidden1"], expected, atol=1e-6)
    assert float(out["hidden1"].min()) < 0.0


def test_post_activation_modules_do_not_warn(images):
    model = DigitsMLP(rngs=nnx.Rngs(0), hidden=(8, 4))
    assert list_layers(model, images) == [
        "hidden1.linear",
        "hidden1.linear.relu",
        "hidden1",
        "dropout",
        "hidden2.linear",
        "hidden2.linear.relu",
        "hidden2",
        "head",
    ]
    assert post_activation_layers(model, images) == ["hidden1", "hidden2"]
    # hidden1 is Linear + ReLU in one module: only its inner Linear warns.
    with pytest.warns(UserWarning) as record:
        out = capture(model, images, ["hidden1", "hidden1.linear"])
    assert len(record) == 1
    assert "layer 'hidden1.linear' " in str(record[0].message)
    assert "capture 'hidden1.linear.relu'" in str(record[0].message)
    expected = jax.nn.relu(out["hidden1.linear"])
    np.testing.assert_allclose(out["hidden1"], expected, atol=1e-6)


# --------------------------------------------------------------------------- #
# TinyTransformer (NNX): (B, T, D) layers, the MLP's gelu
# --------------------------------------------------------------------------- #


def test_transformer_layers_and_gelu_values():
    model = models.make_transformer(jax.random.key(2))
    tokens = jax.random.randint(jax.random.key(3), (3, models.SEQ_LEN), 0, 16)
    assert list_layers(model, tokens) == [
        "embed",
        "block.ln1",
        "block.attn.query",
        "block.attn.key",
        "block.attn.value",
        "block.attn.out",
        "block.attn",
        "block.ln2",
        "block.mlp_in",
        "block.mlp_in.gelu",
        "block.mlp_out",
        "block",
        "head",
    ]  # no softmax: the attention weights' is Flax's own call
    assert post_activation_layers(model, tokens) == ["block.mlp_in.gelu"]

    fn = make_capture(model, ["block.mlp_in.gelu", "block.attn", "block"])
    out = fn(tokens)
    assert out["block.mlp_in.gelu"].shape == (3, models.SEQ_LEN, models.MLP_WIDTH)
    assert out["block.attn"].shape == (3, models.SEQ_LEN, models.WIDTH)

    @nnx.jit  # one compilation instead of one per eager op
    def hand_forward(model, tokens):
        block = model.block
        x = model.embed(tokens) + model.position[...][None]
        attended = block.attn(block.ln1(x))
        x = x + attended
        gelu = nnx.gelu(block.mlp_in(block.ln2(x)))
        return attended, gelu, x + block.mlp_out(gelu)

    attended, gelu, residual = hand_forward(model, tokens)
    np.testing.assert_allclose(out["block.attn"], attended, atol=1e-5)
    np.testing.assert_allclose(out["block.mlp_in.gelu"], gelu, atol=1e-5)
    np.testing.assert_allclose(out["block"], residual, atol=1e-5)

    fn(tokens[::-1])
    assert fn.func.compiled._cache_size() == 1


# --------------------------------------------------------------------------- #
# LinenResNet (Linen): BatchNorm running statistics with train=False
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def resnet():
    model, variables = models.make_resnet(jax.random.key(4))
    variables = jax.tree.map(lambda v: v, variables)  # plain mutable copy
    # Non-trivial running statistics, to tell them apart from batch statistics.
    stats = variables["batch_stats"]["BatchNorm_0"]
    stats["mean"] = jnp.linspace(-0.3, 0.3, 8)
    stats["var"] = jnp.linspace(0.5, 1.5, 8)
    return model, variables


def per_channel(vector):
    return vector.reshape(1, 1, 1, -1)


def test_resnet_layers(resnet, images):
    model, variables = resnet
    block = [
        "Conv_0",
        "BatchNorm_0",
        "BatchNorm_0.relu",
        "Conv_1",
        "BatchNorm_1",
        "relu",
    ]
    expected = ["Conv_0", "BatchNorm_0", "BatchNorm_0.relu"]
    for index in range(2):
        expected += [f"ResidualBlock_{index}.{name}" for name in block]
        expected.append(f"ResidualBlock_{index}")
    expected.append("Dense_0")
    assert list_layers(model, images, variables=variables, train=False) == expected
    assert post_activation_layers(model, images, variables=variables, train=False) == [
        "BatchNorm_0.relu",
        "ResidualBlock_0.BatchNorm_0.relu",
        "ResidualBlock_0",
        "ResidualBlock_1.BatchNorm_0.relu",
        "ResidualBlock_1",
    ]


def test_resnet_inference_matches_hand_forward(resnet, images):
    model, variables = resnet
    layers = ["BatchNorm_0.relu", "ResidualBlock_1", "Dense_0"]
    fn = make_capture(model, layers, variables=variables, train=False)
    out = fn(images)

    params, stats = variables["params"], variables["batch_stats"]["BatchNorm_0"]
    conv = jax.lax.conv_general_dilated(
        images,
        params["Conv_0"]["kernel"],
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    ) + per_channel(params["Conv_0"]["bias"])
    normed = (conv - per_channel(stats["mean"])) / jnp.sqrt(
        per_channel(stats["var"]) + 1e-5
    )
    normed = normed * per_channel(params["BatchNorm_0"]["scale"]) + per_channel(
        params["BatchNorm_0"]["bias"]
    )
    np.testing.assert_allclose(out["BatchNorm_0.relu"], jax.nn.relu(normed), atol=1e-5)

    logits = model.apply(variables, images, train=False)
    np.testing.assert_allclose(out["Dense_0"], logits, atol=1e-5)
    assert float(out["ResidualBlock_1"].min()) >= 0.0
    head = params["Dense_0"]
    pooled = out["ResidualBlock_1"].mean(axis=(1, 2))
    np.testing.assert_allclose(
        pooled @ head["kernel"] + head["bias"][None], logits, atol=1e-5
    )
    fn(images * 2.0)
    assert fn.func.compiled._cache_size() == 1


def test_resnet_training_mode_cannot_mutate_state(resnet, images):
    model, variables = resnet
    with pytest.raises(Exception, match="batch_stats"):
        capture(model, images, "BatchNorm_0.relu", variables=variables, train=True)
