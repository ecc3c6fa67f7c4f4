import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from PIL import Image

from topojax import training
from topojax.capture import make_state_capture
from topojax.digits import DIGIT_NAMES, MLP, load_digits_split
from topojax.gallery.model import GroupSet, LayerView
from topojax.profiles import naps, profile

LAYERS = ["hidden1", "hidden2"]
N_PROFILE = 120


@pytest.fixture(scope="module")
def run():
    """A tiny MLP trained for 60 optax steps; NAPs recorded every 20 steps."""
    data = load_digits_split(0)
    model = MLP(rngs=nnx.Rngs(0), hidden=(32, 16))
    model.eval()  # no dropout: a deterministic functional loop
    capture_fn, _ = make_state_capture(model, LAYERS)
    x_fixed = jnp.asarray(data.x_test[:N_PROFILE])
    labels = np.asarray(data.y_test[:N_PROFILE])
    recorder = training.make_nap_recorder(capture_fn, x_fixed, labels, DIGIT_NAMES)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-2)
    x_train = jnp.asarray(data.x_train)
    y_train = jnp.asarray(data.y_train)

    @jax.jit
    def step(params, opt_state, key):
        idx = jax.random.randint(key, (64,), 0, x_train.shape[0])

        def loss_fn(params):
            logits = nnx.merge(graphdef, params, rest)(x_train[idx])
            return optax.softmax_cross_entropy_with_integer_labels(
                logits, y_train[idx]
            ).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    snapshots, states = [], []
    for i, key in enumerate(jax.random.split(jax.random.key(1), 61)):
        if i % 20 == 0:
            state = nnx.merge_state(params, rest)
            states.append(state)
            snapshots.append(recorder(state))
        params, opt_state = step(params, opt_state, key)
    return dict(
        capture_fn=capture_fn,
        recorder=recorder,
        snapshots=snapshots,
        states=states,
        x=x_fixed,
        labels=labels,
        graphdef=graphdef,
    )


def test_recorder_matches_profiles_and_does_not_recompile(run):
    recorder, state = run["recorder"], run["states"][-1]
    snap = recorder(state)
    assert list(snap) == LAYERS
    assert snap["hidden1"].shape == (10, 32) and snap["hidden2"].shape == (10, 16)
    capture_fn = run["capture_fn"]
    reference = profile(
        lambda x: capture_fn(state, x), [(run["x"], run["labels"])], DIGIT_NAMES
    )
    for layer in LAYERS:
        np.testing.assert_allclose(
            snap[layer], naps(reference[layer]), rtol=1e-5, atol=1e-6
        )
    np.testing.assert_array_equal(
        recorder.counts, np.bincount(run["labels"], minlength=10)
    )
    # 4 snapshots during training + this call: one compilation in all
    assert recorder.compiled._cache_size() == 1
    # batched (with a padded last batch) gives the same NAPs
    batched = training.make_nap_recorder(
        capture_fn, run["x"], run["labels"], DIGIT_NAMES, batch_size=50
    )
    assert batched.x.shape[:2] == (3, 50)
    for layer in LAYERS:
        np.testing.assert_allclose(
            batched(state)[layer], snap[layer], rtol=1e-5, atol=1e-6
        )


def test_recorder_input_errors(run):
    with pytest.raises(ValueError, match=r"group_ids must be in \[0, 3\)"):
        training.make_nap_recorder(run["capture_fn"], run["x"], run["labels"], 3)
    with pytest.raises(ValueError, match="leading axis of 5 inputs"):
        training.make_nap_recorder(run["capture_fn"], run["x"], np.zeros(5, int), 3)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        training.make_nap_recorder(
            run["capture_fn"], run["x"], run["labels"], 10, batch_size=0
        )


def test_profile_checkpoints_equals_recorded_snapshots(run):
    # states, (graphdef, state) pairs and modules are all accepted
    graphdef = run["graphdef"]
    checkpoints = [
        run["states"][0],
        (nnx.graphdef(nnx.merge(graphdef, run["states"][1])), run["states"][1]),
        nnx.merge(graphdef, run["states"][2]),
        run["states"][3],
    ]
    series = training.profile_checkpoints(
        run["capture_fn"], checkpoints, run["x"], run["labels"], DIGIT_NAMES
    )
    recorded = training.stack_snapshots(run["snapshots"])
    for layer in LAYERS:
        assert series[layer].shape == (4, 10, recorded[layer].shape[2])
        np.testing.assert_allclose(series[layer], recorded[layer], atol=1e-6)
    # training changed the NAPs
    change = float(jnp.abs(recorded["hidden2"][-1] - recorded["hidden2"][0]).max())
    assert change > 1e-2
    with pytest.raises(ValueError, match="snapshot 1 has layers"):
        training.stack_snapshots([{"a": 1}, {"b": 1}])


@pytest.mark.parametrize("layout_on", ["final", "joint"])
def test_training_maps_one_layout_shared_clim_and_animation(run, tmp_path, layout_on):
    series = training.stack_snapshots(run["snapshots"])
    labels = [f"step {20 * t}" for t in range(4)]
    maps = training.training_maps(
        series,
        key=jax.random.key(0),
        group_names=DIGIT_NAMES,
        labels=labels,
        layout_on=layout_on,
    )
    layer = maps["hidden2"]
    assert layer.layout.coords.shape == (16, 2) and layer.naps.shape == (4, 10, 16)
    assert layer.clim == pytest.approx(float(np.abs(series["hidden2"]).max()))
    frames = training.render_frames(layer, resolution=16, caption=False, gap=0)
    assert frames.shape == (4, 16 + 0, 16 * 10, 4)
    # every frame is exactly the frame's NAPs drawn on the one layout, one clim
    from topojax.colors import colorize
    from topojax.render import render

    for t in (0, 3):
        own = np.asarray(
            colorize(
                render(layer.layout.coords, series["hidden2"][t], resolution=16),
                clim=layer.clim,
            )
        )
        tile = frames[t, :, 16 * 4 : 16 * 5, :3]
        alpha = own[4, ..., 3:4] / 255.0
        expected = (own[4, ..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
        np.testing.assert_array_equal(tile, expected)
    captioned = training.render_frames(layer, resolution=16)
    for suffix in (".gif", ".png"):
        path = training.write_animation(captioned, tmp_path / f"hidden2{suffix}")
        with Image.open(path) as image:
            assert image.n_frames == 4
    # the gallery page's series
    series_page = training.training_series(layer, method="pca")
    view = LayerView(
        name="hidden2",
        n_neurons=16,
        layouts={"pca": np.asarray(layer.layout.coords)},
        layout_metrics={},
        group_sets=(
            GroupSet("classes", DIGIT_NAMES, np.ones(10, int), series["hidden2"][-1]),
        ),
        training=series_page,
    )
    assert view.training.n_frames == 4


def test_joint_and_final_features_differ(run):
    series = np.asarray(training.stack_snapshots(run["snapshots"])["hidden1"])
    present = np.ones(10, bool)
    assert training.LAYOUT_FEATURES["final"](series, present).shape == (32, 10)
    joint = training.LAYOUT_FEATURES["joint"](series, present)
    assert joint.shape == (32, 40)
    np.testing.assert_array_equal(joint[:, 30:], series[-1].T)


def test_training_maps_and_animation_errors(run, tmp_path):
    series = training.stack_snapshots(run["snapshots"])
    with pytest.raises(ValueError, match="unknown layout_on 'first'"):
        training.training_maps(
            series, key=jax.random.key(0), group_names=DIGIT_NAMES, layout_on="first"
        )
    with pytest.raises(ValueError, match="got 2 labels for 4 frames"):
        training.training_maps(
            series, key=jax.random.key(0), group_names=DIGIT_NAMES, labels=["a", "b"]
        )
    with pytest.raises(ValueError, match="unknown animation suffix '.mp4'"):
        training.write_animation(np.zeros((2, 4, 4, 4), np.uint8), tmp_path / "a.mp4")


class _LinenMLP(linen.Module):
    # the demo MLP's (64, 32) and (32, 16) kernels: initialisers already compiled
    @linen.compact
    def __call__(self, x):
        x = linen.relu(linen.Dense(32, name="hidden")(x.reshape(x.shape[0], -1)))
        return linen.Dense(16, name="head")(x)


def test_linen_checkpoints(run):
    model = _LinenMLP()
    x = run["x"][:30]
    ids = run["labels"][:30] % 3
    variables = [model.init(jax.random.key(i), x) for i in range(3)]
    capture_fn, _ = make_state_capture(model, ["hidden.relu"], variables=variables[0])
    series = training.profile_checkpoints(capture_fn, variables, x, ids, 3)
    assert series["hidden.relu"].shape == (3, 3, 32)
    assert (
        float(jnp.abs(series["hidden.relu"][0] - series["hidden.relu"][1]).max()) > 1e-3
    )


def test_orbax_checkpoint_directory(run, tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    directory = tmp_path / "checkpoints"
    with ocp.CheckpointManager(directory) as manager:
        for step, state in zip((0, 20, 40), run["states"][:3], strict=True):
            manager.save(step, args=ocp.args.StandardSave(state))
        manager.wait_until_finished()
    steps, states = training.load_orbax_checkpoints(directory, run["states"][0])
    assert steps == [0, 20, 40]
    series = training.profile_checkpoints(
        run["capture_fn"], states, run["x"], run["labels"], DIGIT_NAMES
    )
    recorded = training.stack_snapshots(run["snapshots"][:3])
    np.testing.assert_allclose(series["hidden2"], recorded["hidden2"], atol=1e-6)
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        training.load_orbax_checkpoints(tmp_path / "missing", run["states"][0])


def test_orbax_missing_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)
    with pytest.raises(ImportError, match="pip install orbax-checkpoint"):
        training.load_orbax_checkpoints(tmp_path, {})


@pytest.mark.xdist_group("demo")
def test_demo_gallery_has_training_pages(demo_gallery):
    """The demo records NAPs before training and after each of its 2 epochs."""
    import json

    root = demo_gallery.parent
    files = json.loads((root / "manifest.json").read_text())["files"]
    for page in ("digits-mlp/hidden1", "digits-mlp/hidden2", "digits-cnn/conv2"):
        html = (root / page / "training.html").read_text()
        assert all(f"epoch {e}" in html for e in range(3)), page
        frames = {
            p.split("/")[-2] for p in files if p.startswith(f"{page}/maps/training/")
        }
        assert frames == {"0", "1", "2"}, page
        assert "training.html" in (root / page / "index.html").read_text()
