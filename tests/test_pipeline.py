"""`topojax.analyze` on models written in the tests (tests/models.py)."""

import jax
import numpy as np
import pytest

import topojax as tj
from tests.models import (
    IMAGE_SHAPE,
    SEQ_LEN,
    VOCAB,
    make_functional_mlp,
    make_resnet,
    make_transformer,
)
from topojax.capture import make_capture_with_output
from topojax.training import make_recorder, training_run

N_INPUTS = 60
N_CLASSES = 3
FAST = {"methods": ("pca",), "quiet": True}


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (N_INPUTS, *IMAGE_SHAPE)).astype(np.float32)
    y = (np.arange(N_INPUTS) % N_CLASSES).astype(np.int32)
    x[..., 0] += y[:, None, None] * 0.5  # classes differ; values outside [0, 1]
    return x, y


@pytest.fixture(scope="module")
def mlp():
    return make_functional_mlp(jax.random.key(0))


@pytest.fixture(scope="module")
def full(mlp, images):
    """Every input profiled (n_per_group=None): comparable to NumPy."""
    x, y = images
    return tj.analyze(mlp, x, y, key=jax.random.key(1), n_per_group=None, **FAST)


def hidden(mlp, x):
    flat = x.reshape(x.shape[0], -1)
    h1 = np.asarray(jax.nn.relu(mlp.hidden1(flat)))
    h2 = np.asarray(jax.nn.gelu(mlp.hidden2(h1)))
    return {"hidden1.relu": h1, "hidden2.gelu": h2}


def reference_naps(values, ids, n_groups):
    means = np.stack([values[ids == g].mean(axis=0) for g in range(n_groups)])
    return means - means.mean(axis=0)


def test_default_layers_are_post_activation(full):
    assert [layer.name for layer in full.layers] == ["hidden1.relu", "hidden2.gelu"]
    assert [g.name for g in full.layers[0].group_sets] == ["classes", "errors"]


def test_class_naps_equal_numpy(full, mlp, images):
    x, y = images
    for layer in full.layers:
        classes = layer.group_sets[0]
        expected = reference_naps(hidden(mlp, x)[layer.name], y, N_CLASSES)
        np.testing.assert_allclose(classes.values, expected, atol=1e-5)
        np.testing.assert_array_equal(classes.counts, np.bincount(y))


def test_error_groups_follow_the_models_predictions(full, mlp, images):
    x, y = images
    predictions = np.asarray(mlp(x)).argmax(axis=1)
    errors = full.layers[0].group_sets[1]
    assert errors.group_names[:2] == ("0/correct", "0/wrong")
    expected = [
        np.sum((y == c) & ((predictions == c) == (kind == "correct")))
        for c in range(N_CLASSES)
        for kind in ("correct", "wrong")
    ]
    np.testing.assert_array_equal(errors.counts, expected)
    assert errors.order == tuple(range(2 * N_CLASSES))  # pairs stay side by side
    assert np.all(np.isfinite(errors.values))
    assert full.params["accuracy"] == pytest.approx(np.mean(predictions == y))


def test_top_inputs_are_each_neurons_largest(full, mlp, images):
    x, _ = images
    layer = full.layers[0]
    values = hidden(mlp, x)["hidden1.relu"]  # (n, N)
    shown = full.inputs[layer.top_inputs[:, 0]]  # best input's image per neuron
    best = values.argmax(axis=0)
    lively = values.max(axis=0) > 0
    scaled = (x[..., 0] - x.min()) / (x.max() - x.min())
    np.testing.assert_allclose(shown[lively], scaled[best[lively]], atol=1e-6)
    k = layer.top_inputs.shape[1]
    assert k == 8
    ranked = np.sort(values, axis=0)[::-1][:k].T  # (N, k) top values
    top_images = full.inputs[layer.top_inputs]  # (N, k, 8, 8)
    for neuron in np.flatnonzero(lively)[:5]:
        found = [
            np.flatnonzero(np.all(np.isclose(scaled, img, atol=1e-6), axis=(1, 2)))[0]
            for img in top_images[neuron]
        ]
        np.testing.assert_allclose(values[found, neuron], ranked[neuron], atol=1e-6)


def test_exemplars_and_mean_inputs(full, images):
    x, y = images
    classes = full.layers[0].group_sets[0]
    scaled = (x[..., 0] - x.min()) / (x.max() - x.min())
    for c in range(N_CLASSES):
        exemplar = full.inputs[classes.exemplars[c]]
        matches = np.flatnonzero(np.all(np.isclose(scaled, exemplar), axis=(1, 2)))
        assert y[matches[0]] == c
        np.testing.assert_allclose(
            classes.mean_inputs[c], scaled[y == c].mean(axis=0), atol=1e-6
        )


def test_balanced_sample_caps_every_group(mlp, images):
    x, y = images
    analysis = tj.analyze(mlp, x, y, key=jax.random.key(2), n_per_group=7, **FAST)
    classes, errors = analysis.layers[0].group_sets
    np.testing.assert_array_equal(classes.counts, [7, 7, 7])
    assert np.all(errors.counts <= 7)
    again = tj.analyze(mlp, x, y, key=jax.random.key(2), n_per_group=7, **FAST)
    np.testing.assert_array_equal(again.layers[0].group_sets[0].values, classes.values)
    other = tj.analyze(mlp, x, y, key=jax.random.key(3), n_per_group=7, **FAST)
    assert not np.allclose(other.layers[0].group_sets[0].values, classes.values)


def test_batches_of_any_size_equal_arrays(mlp, images):
    x, y = images
    cuts = [0, 5, 6, 31, 44, N_INPUTS]
    batches = [(x[a:b], y[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    key = jax.random.key(4)
    from_arrays = tj.analyze(mlp, x, y, key=key, n_per_group=9, batch_size=16, **FAST)
    from_list = tj.analyze(mlp, batches, key=key, n_per_group=9, batch_size=16, **FAST)
    from_fn = tj.analyze(
        mlp, lambda: iter(batches), key=key, n_per_group=9, batch_size=16, **FAST
    )
    for other in (from_list, from_fn):
        for a, b in zip(from_arrays.layers, other.layers, strict=True):
            for set_a, set_b in zip(a.group_sets, b.group_sets, strict=True):
                np.testing.assert_allclose(set_a.values, set_b.values, atol=1e-6)
            np.testing.assert_array_equal(a.top_inputs, b.top_inputs)


def test_linen_resnet_with_confusion_and_attributes(images):
    x, y = images
    model, variables = make_resnet(jax.random.key(5))
    parity = np.arange(N_INPUTS) % 2
    analysis = tj.analyze(
        model,
        x,
        y,
        key=jax.random.key(6),
        variables=variables,
        apply_kwargs={"train": False},
        layers=["BatchNorm_0.relu", "ResidualBlock_1"],
        groups=(
            tj.CLASSES,
            tj.CONFUSION,
            tj.attribute_groups("parity", parity, {0: "even", 1: "odd"}),
        ),
        **FAST,
    )
    conv = analysis.layers[0]
    assert conv.n_neurons == 8  # channels, spatial mean
    names = [g.name for g in conv.group_sets]
    assert names == ["classes", "confusion", "parity"]
    confusion = conv.group_sets[1]
    assert all("→" in name for name in confusion.group_names)
    assert confusion.counts.sum() == N_INPUTS
    assert conv.group_sets[2].group_names == ("even", "odd")
    np.testing.assert_array_equal(conv.group_sets[2].counts, [30, 30])


def test_transformer_tokens_first_token_and_no_images():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, VOCAB, (24, SEQ_LEN)).astype(np.int32)
    labels = tokens[:, 0] % 3
    model = make_transformer(jax.random.key(7))
    analysis = tj.analyze(
        model,
        tokens,
        labels,
        key=jax.random.key(8),
        layers=["block.mlp_in.gelu", "block"],
        spatial=0,
        **FAST,
    )
    assert [layer.n_neurons for layer in analysis.layers] == [32, 16]
    assert analysis.inputs is None and analysis.layers[0].top_inputs is None
    assert analysis.layers[0].group_sets[0].exemplars is None
    # spatial=0: the first token's activations, class means minus their mean.
    captured = tj.capture(model, tokens, ["block.mlp_in.gelu"])["block.mlp_in.gelu"]
    expected = reference_naps(np.asarray(captured)[:, 0], labels, 3)
    classes = analysis.layers[0].group_sets[0]
    assert classes.counts.sum() == 24
    np.testing.assert_allclose(classes.values, expected, atol=1e-5)


def test_training_run_reaches_the_layer_views(mlp, images):
    x, y = images
    recorder = make_recorder(mlp, x, y)
    frames = [
        recorder.frame(mlp, "epoch 0", loss=2.0),
        recorder.frame(mlp, "epoch 1", loss=1.5, accuracy=0.5),
    ]
    run = training_run(frames)
    analysis = tj.analyze(mlp, x, y, key=jax.random.key(9), training=run, **FAST)
    series = analysis.layers[0].training
    assert series.labels == ("epoch 0", "epoch 1")
    np.testing.assert_allclose(series.metrics["loss"], [2.0, 1.5])
    assert np.isnan(series.metrics["accuracy"][0])
    np.testing.assert_array_equal(series.counts, np.bincount(y))
    expected = reference_naps(hidden(mlp, x)["hidden1.relu"], y, N_CLASSES)
    np.testing.assert_allclose(series.values[1], expected, atol=1e-5)


def test_orbax_checkpoints_become_frames(mlp, images, tmp_path):
    import orbax.checkpoint as ocp
    from flax import nnx

    from topojax.training import checkpoint_frames

    x, y = images
    state = nnx.state(mlp)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        for step in (0, 10):
            scaled = jax.tree.map(lambda a, step=step: a * (1 + step / 10), state)
            manager.save(step, args=ocp.args.StandardSave(scaled))
        manager.wait_until_finished()
    recorder = make_recorder(mlp, x, y, layers=["hidden1.relu"])
    frames = checkpoint_frames(
        recorder, tmp_path / "ckpt", state, metrics={"loss": [1.0, 0.5]}
    )
    assert [f.label for f in frames] == ["step 0", "step 10"]
    np.testing.assert_allclose(
        np.asarray(frames[0].naps["hidden1.relu"]),
        np.asarray(recorder(state)["hidden1.relu"]),
        atol=1e-6,
    )
    assert not np.allclose(
        np.asarray(frames[1].naps["hidden1.relu"]),
        np.asarray(frames[0].naps["hidden1.relu"]),
    )
    with pytest.raises(ValueError, match="one per checkpoint step"):
        checkpoint_frames(recorder, tmp_path / "ckpt", state, metrics={"loss": [1]})


def test_the_analysis_builds_a_gallery(full, tmp_path):
    index = tj.gallery.build_gallery([full], tmp_path / "gallery")
    assert index.is_file()
    saved = tj.gallery.save_analysis(full, tmp_path / "analysis.npz")
    loaded = tj.gallery.load_analysis(saved)
    classes = loaded.layers[0].group_sets[0]
    np.testing.assert_array_equal(
        classes.exemplars, full.layers[0].group_sets[0].exemplars
    )
    np.testing.assert_allclose(
        classes.mean_inputs, full.layers[0].group_sets[0].mean_inputs
    )


# --------------------------------------------------------------------------- #
# Bad input: one clear error, before the expensive work
# --------------------------------------------------------------------------- #


def test_bad_inputs_are_named(mlp, images):
    x, y = images
    key = jax.random.key(0)
    cases = [
        (dict(data=iter([(x, y)])), "one-shot iterator"),
        (dict(data=x, labels=y[:-1]), "one label per input"),
        (dict(data=x, labels=y.astype(np.float32)), "integer"),
        (dict(data=x, labels=np.zeros_like(y)), "single class"),
        (dict(data=x, labels=y, layers=["nope"]), r"unknown layer.*hidden1\.relu"),
        (dict(data=x, labels=y, batch_size=0), "batch_size"),
        (dict(data=x, labels=y, n_per_group=0), "n_per_group"),
        (dict(data=x, labels=y, methods=("nope",)), "unknown layout method"),
        (dict(data=x, labels=y, groups=("classes",)), "GroupSpec"),
        (
            dict(data=[(x[:10], y[:10]), (x[10:, :4], y[10:])]),
            r"batch 1: inputs of shape",
        ),
        (
            dict(data=[(x[:10], y[:10]), (x[10:].astype(np.float64), y[10:])]),
            r"batch 1: inputs of shape .* float64",
        ),
        (
            dict(data=x, labels=y, groups=(tj.attribute_groups("a", y[:5]),)),
            "one per input",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            tj.analyze(mlp, key=key, **{**FAST, **kwargs})


def test_a_grouping_with_one_group_warns_and_an_empty_group_is_zero(mlp, images):
    x, y = images
    single = tj.attribute_groups("same", np.zeros(N_INPUTS, int))
    with pytest.warns(UserWarning, match="'same' has 1 non-empty group"):
        analysis = tj.analyze(
            mlp, x, y, key=jax.random.key(0), groups=(tj.CLASSES, single), **FAST
        )
    np.testing.assert_array_equal(analysis.layers[0].group_sets[1].values, 0.0)
    names = ("a", "b", "c", "never seen")
    analysis = tj.analyze(mlp, x, y, key=jax.random.key(0), class_names=names, **FAST)
    classes = analysis.layers[0].group_sets[0]
    assert classes.counts[3] == 0 and classes.exemplars[3] == -1
    assert np.all(classes.values[3] == 0.0)
    with pytest.raises(ValueError, match="cannot be the layout input"):
        tj.analyze(mlp, x, y, key=jax.random.key(0), groups=(single,), **FAST)


def test_capture_with_output_returns_the_logits_without_recompiling(mlp, images):
    x, _ = images
    fn = make_capture_with_output(mlp, ["hidden1.relu"])
    activations, logits = fn(x[:8])
    np.testing.assert_allclose(logits, mlp(x[:8]), atol=1e-5)
    np.testing.assert_allclose(
        activations["hidden1.relu"], hidden(mlp, x[:8])["hidden1.relu"], atol=1e-6
    )
    fn(x[8:16] + 1.0)
    assert fn.func._cache_size() == 1
