"""``topojax analyze``: a user's factory file, an .npz, a checkpoint -> a gallery.

The models are written to tmp files here, as a user writes them; they share one
hidden width and one dataset so that the layouts compile once.
"""

import sys

import jax
import numpy as np
import pytest
from flax import nnx

import topojax as tj
from topojax.cli import main
from topojax.gallery import load_analysis
from topojax.loading import (
    ModelParts,
    load_factory,
    load_labelled_npz,
    resolve_layers,
    restore_checkpoint,
)

N_INPUTS = 40
N_CLASSES = 4
FAST = ["--methods", "pca", "--n-per-group", "5", "--quiet"]

NNX_MODEL = """
from flax import nnx
from jax.nn import relu  # imported into the module: capture must still see it


class MLP(nnx.Module):
    def __init__(self, rngs, width=16, extra=False):
        self.hidden = nnx.Linear(64, width, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.out = nnx.Linear(width, 4, rngs=rngs)
        if extra:
            self.extra = nnx.Linear(4, 4, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(relu(self.hidden(x.reshape(x.shape[0], -1)))))


def make_model():
    return MLP(nnx.Rngs(0))


def make_with_kwargs():
    return MLP(nnx.Rngs(0)), None, {}


def make_none():
    return None


def make_raises():
    raise RuntimeError("boom")


def make_class():
    return MLP


def make_nnx_with_variables():
    return MLP(nnx.Rngs(0)), {"params": {}}


def make_bare_linen():
    import flax.linen as nn

    return nn.Dense(3)


not_a_function = 3
"""

LINEN_MODEL = """
import flax.linen as nn
import jax
import jax.numpy as jnp


class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(16)(x.reshape(x.shape[0], -1))
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(4)(nn.relu(x))


def _init():
    net = Net()
    return net, net.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)


def make_model():
    net, variables = _init()
    return net, variables, {"train": False}


def make_without_train():
    return _init()
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Model files and datasets in one directory: ``{name: path}``."""
    root = tmp_path_factory.mktemp("analyze")
    (root / "model.py").write_text(NNX_MODEL)
    (root / "linen_model.py").write_text(LINEN_MODEL)
    (root / "broken.py").write_text("import no_such_package_for_topojax\n")
    rng = np.random.default_rng(0)
    y = (np.arange(N_INPUTS) % N_CLASSES).astype(np.int32)
    x = rng.uniform(0, 1, (N_INPUTS, 8, 8, 1)).astype(np.float32)
    x[..., 0] += y[:, None, None] * 0.3  # classes differ
    data = {
        "x": x,
        "y": y,
        "class_names": np.array(["cat", "dog", "owl", "eel"]),
        "colour": np.array(["red", "blue"] * (N_INPUTS // 2)),
    }
    np.savez(root / "data.npz", **data)
    return {
        "root": root,
        "model": root / "model.py",
        "linen": root / "linen_model.py",
        "data": root / "data.npz",
        "arrays": data,
    }


def snapshot(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def analyze_argv(files, out, factory="make_model", *extra):
    return [
        "analyze",
        f"{files['model']}:{factory}",
        "--data",
        str(files["data"]),
        "--out",
        str(out),
        *FAST,
        *extra,
    ]


# --------------------------------------------------------------------------- #
# Success
# --------------------------------------------------------------------------- #


def direct_analysis(model, files):
    """`topojax.analyze` with the options the CLI tests pass (seed 0)."""
    arrays = files["arrays"]
    return tj.analyze(
        model,
        arrays["x"],
        arrays["y"],
        key=jax.random.key(0),
        methods=("pca",),
        n_per_group=5,
        quiet=True,
    )


def test_nnx_factory_to_gallery_and_rebuild(files, tmp_path, capsys):
    before = snapshot(files["root"])
    out = tmp_path / "gallery"
    argv = analyze_argv(files, out, "make_model", "--attributes", "colour")
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (out / "index.html").is_file()
    saved = tmp_path / "gallery.analysis.npz"
    assert str(saved) in printed
    analysis = load_analysis(saved)
    assert [layer.name for layer in analysis.layers] == ["hidden.relu"]
    group_sets = analysis.layers[0].group_sets
    assert [g.name for g in group_sets] == ["classes", "errors", "colour"]
    assert group_sets[0].group_names == ("cat", "dog", "owl", "eel")
    assert group_sets[2].group_names == ("blue", "red")
    assert analysis.model_name == "make_model"
    # The same numbers as the Python API with the same options and seed.
    direct = direct_analysis(load_factory(f"{files['model']}:make_model").model, files)
    np.testing.assert_allclose(
        group_sets[0].values, direct.layers[0].group_sets[0].values, atol=1e-6
    )
    # `topojax gallery` rebuilds from the saved analysis.
    assert main(["gallery", str(saved), "--out", str(tmp_path / "rebuilt")]) == 0
    assert (tmp_path / "rebuilt" / "index.html").is_file()
    # Running again replaces both without --force: they are ours.
    assert main(analyze_argv(files, out, "make_with_kwargs", "--name", "mlp")) == 0
    assert load_analysis(saved).model_name == "mlp"
    assert snapshot(files["root"]) == before  # no __pycache__ beside the model


def test_linen_factory_with_batchnorm_and_apply_kwargs(files, tmp_path, capsys):
    out = tmp_path / "linen"
    argv = analyze_argv(files, out, "make_model", "--groups", "classes,confusion")
    argv[1] = f"{files['linen']}:make_model"
    assert main(argv) == 0
    analysis = load_analysis(tmp_path / "linen.analysis.npz")
    assert [layer.name for layer in analysis.layers] == ["BatchNorm_0.relu"]
    assert [g.name for g in analysis.layers[0].group_sets] == ["classes", "confusion"]


def test_module_path_factory(files, tmp_path, monkeypatch):
    monkeypatch.chdir(files["root"])  # MODULE:FUNCTION is looked up here first
    parts = load_factory("linen_model:make_model")
    assert parts.apply_kwargs == {"train": False}
    assert set(parts.variables) == {"params", "batch_stats"}


# --------------------------------------------------------------------------- #
# Orbax checkpoints
# --------------------------------------------------------------------------- #


def scale(array, factor):
    floating = jax.numpy.issubdtype(array.dtype, jax.numpy.floating)
    return array * factor if floating else array


def save_manager(directory, state, steps=(1,)):
    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(directory) as manager:
        for step in steps:
            scaled = jax.tree.map(lambda a, step=step: scale(a, step), state)
            manager.save(step, args=ocp.args.StandardSave(scaled))
        manager.wait_until_finished()


def other_mlp(files, **kwargs):
    """The factory file's MLP with other weights (another seed)."""
    parts = load_factory(f"{files['model']}:make_model")
    return type(parts.model)(nnx.Rngs(7), **kwargs)


def test_checkpoint_is_restored_into_the_model(files, tmp_path, capsys):
    trained = other_mlp(files)
    save_manager(tmp_path / "ckpt", nnx.state(trained), steps=(1,))
    checkpoint = ["--checkpoint", str(tmp_path / "ckpt")]
    assert main(analyze_argv(files, tmp_path / "out", "make_model", *checkpoint)) == 0
    restored = load_analysis(tmp_path / "out.analysis.npz").layers[0].group_sets[0]
    expected = direct_analysis(trained, files).layers[0].group_sets[0]
    np.testing.assert_allclose(restored.values, expected.values, atol=1e-6)
    untrained = load_factory(f"{files['model']}:make_model").model
    baseline = direct_analysis(untrained, files).layers[0].group_sets[0]
    assert not np.allclose(restored.values, baseline.values)


def test_restore_takes_the_latest_step_and_skips_rng_state(files, tmp_path):
    trained = other_mlp(files)
    save_manager(tmp_path / "ckpt", nnx.state(trained), steps=(1, 3))
    parts = load_factory(f"{files['model']}:make_model")
    restore_checkpoint(parts, tmp_path / "ckpt")
    np.testing.assert_allclose(
        np.asarray(parts.model.hidden.kernel[...]),
        3 * np.asarray(trained.hidden.kernel[...]),
    )


def test_restore_a_single_pure_dict_checkpoint(files, tmp_path):
    import orbax.checkpoint as ocp

    trained = other_mlp(files)
    params = nnx.to_pure_dict(nnx.state(trained, nnx.Not(nnx.RngState)))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "single", params)
    parts = load_factory(f"{files['model']}:make_model")
    restore_checkpoint(parts, tmp_path / "single")
    np.testing.assert_array_equal(
        np.asarray(parts.model.out.bias[...]), np.asarray(trained.out.bias[...])
    )


def test_restore_linen_variables_from_a_train_state(files, tmp_path):
    parts = load_factory(f"{files['linen']}:make_model")
    trained = jax.tree.map(lambda a: a + 1.0, parts.variables)
    save_manager(tmp_path / "ckpt", {**trained, "step": np.int32(5)})
    restored = restore_checkpoint(parts, tmp_path / "ckpt")
    assert isinstance(restored, ModelParts)
    for collection, layer, name in [
        ("batch_stats", "BatchNorm_0", "var"),
        ("params", "Dense_1", "kernel"),
    ]:
        np.testing.assert_allclose(
            np.asarray(restored.variables[collection][layer][name]),
            np.asarray(trained[collection][layer][name]),
        )
    assert restored.apply_kwargs == {"train": False}


# --------------------------------------------------------------------------- #
# Bad input: one line, exit status 2, no traceback, nothing written
# --------------------------------------------------------------------------- #


def run_bad(argv, files, tmp_path, capsys) -> str:
    before = snapshot(files["root"]), snapshot(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.startswith("topojax analyze: error: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (snapshot(files["root"]), snapshot(tmp_path)) == before
    return err


def write_npz(tmp_path, name="bad.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def with_data(files, out, path, *extra):
    argv = analyze_argv(files, out, "make_model", *extra)
    argv[argv.index("--data") + 1] = str(path)
    return argv


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("{root}/nope.py:make_model", "factory file not found"),
        ("no_such_module_for_topojax:make", "no module 'no_such_module_for_topojax'"),
        ("{root}/model.py", "is not FILE.py:FUNCTION or MODULE:FUNCTION"),
        ("{root}/model.py:make_nothing", "no function 'make_nothing'"),
        ("{root}/model.py:not_a_function", "is of type int, not a function"),
        ("{root}/model.py:make_raises", "raised RuntimeError: boom"),
        ("{root}/model.py:make_none", "returned a NoneType, not a model"),
        ("{root}/model.py:make_class", "returned the class MLP, not an instance"),
        ("{root}/model.py:make_bare_linen", "Linen module without its variables"),
        ("{root}/model.py:make_nnx_with_variables", "NNX module holds its own"),
        ("{root}/broken.py:make", "importing"),
        ("{root}/linen_model.py:make_without_train", "does not run on inputs"),
    ],
)
def test_bad_factory(files, tmp_path, capsys, factory, message):
    argv = analyze_argv(files, tmp_path / "out")
    argv[1] = factory.format(root=files["root"])
    err = run_bad(argv, files, tmp_path, capsys)
    assert message in err
    if "no function" in message:
        assert "make_model" in err  # lists what the file defines


def test_bad_factory_import_names_the_error(files, tmp_path, capsys):
    argv = analyze_argv(files, tmp_path / "out")
    argv[1] = f"{files['root']}/broken.py:make"
    err = run_bad(argv, files, tmp_path, capsys)
    assert "ModuleNotFoundError" in err and "no_such_package_for_topojax" in err


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": np.zeros(4, np.int32)}, "no array 'x' (the inputs)"),
        ({"x": np.zeros((4, 8, 8, 1), np.float32)}, "no array 'y' (the labels)"),
        (
            {"x": np.zeros((4, 8, 8, 1), np.float32), "y": np.array([0, 1, 0])},
            "x has 4 inputs but y has 3 labels",
        ),
        (
            {"x": np.zeros((4, 8, 8, 1), np.float32), "y": np.array([0.0, 1, 0, 1])},
            "y must be a 1-D integer array",
        ),
        (
            {"x": np.zeros((4, 8, 8, 1), np.float32), "y": np.zeros(4, np.int64)},
            "single class",
        ),
        (
            {"x": np.array([None] * 4, dtype=object), "y": np.array([0, 1, 0, 1])},
            "stored with pickle",
        ),
        (
            {"x": np.zeros((6, 8, 8, 1), np.float32), "y": np.arange(6)},
            "the labels go up to 5 but the model outputs 4 class scores",
        ),
    ],
)
def test_bad_data(files, tmp_path, capsys, arrays, message):
    path = write_npz(tmp_path, **arrays)
    err = run_bad(with_data(files, tmp_path / "out", path), files, tmp_path, capsys)
    assert message in err
    if "no array" in message:
        assert "arrays in the file" in err


def test_missing_data_file(files, tmp_path, capsys):
    argv = with_data(files, tmp_path / "out", tmp_path / "missing.npz")
    assert "data file not found" in run_bad(argv, files, tmp_path, capsys)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layers", "nope"], "unknown layer(s) ['nope']; valid layers: ["),
        (["--groups", "classes,bogus"], "unknown group set(s) ['bogus']"),
        (["--attributes", "shoe_size"], "no array 'shoe_size' (an attribute)"),
        (["--methods", "bogus"], "unknown layout method 'bogus'"),
        (["--n-per-group", "0"], "--n-per-group must be a positive integer"),
        (["--class-names", "a,b"], "class_names: 2 names for labels up to 3"),
        (["--checkpoint", "{tmp}/none"], "no checkpoint directory"),
        (["--checkpoint", "{root}"], "is not an Orbax checkpoint"),
    ],
)
def test_bad_options(files, tmp_path, capsys, extra, message):
    extra = [e.format(tmp=tmp_path, root=files["root"]) for e in extra]
    err = run_bad(
        analyze_argv(files, tmp_path / "out", "make_model", *extra),
        files,
        tmp_path,
        capsys,
    )
    assert message in err
    if "unknown layer" in message:
        assert "'hidden.relu'" in err
    if "group set" in message:
        assert "'confusion'" in err
    if "shoe_size" in message:
        assert "'colour'" in err


@pytest.mark.parametrize(
    ("model_kwargs", "message"),
    [
        ({"width": 8}, "'hidden.bias' has shape (8,) in the checkpoint but (16,)"),
        ({"extra": True}, "the checkpoint holds 'extra.bias', which the model"),
    ],
)
def test_checkpoint_that_does_not_match(files, tmp_path, capsys, model_kwargs, message):
    save_manager(tmp_path / "ckpt", nnx.state(other_mlp(files, **model_kwargs)))
    argv = analyze_argv(
        files, tmp_path / "out", "make_model", "--checkpoint", str(tmp_path / "ckpt")
    )
    err = run_bad(argv, files, tmp_path, capsys)
    assert "does not match the model" in err and message in err


def test_checkpoint_without_orbax(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)  # not installed
    argv = analyze_argv(files, tmp_path / "out", "make_model", "--checkpoint", ".")
    assert "pip install orbax-checkpoint" in run_bad(argv, files, tmp_path, capsys)


def test_foreign_analysis_file_needs_force(files, tmp_path, capsys):
    (tmp_path / "out.analysis.npz").write_text("my notes")
    err = run_bad(analyze_argv(files, tmp_path / "out"), files, tmp_path, capsys)
    assert "is not a saved topojax analysis; pass --force" in err


def test_loader_contracts(files):
    data = load_labelled_npz(files["data"], ["colour"], class_names=list("abcd"))
    assert data.class_names == ("a", "b", "c", "d")
    assert data.attributes["colour"].shape == (N_INPUTS,)
    parts = load_factory(f"{files['model']}:make_model")
    assert resolve_layers(parts, data.x[:1]) == ("hidden.relu",)
    assert resolve_layers(parts, data.x[:1], ["hidden"]) == ("hidden",)


def test_help_documents_the_factory_contract(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for expected in (
        "FILE.py:FUNCTION",
        "MODULE:FUNCTION",
        "(linen_module, variables)",
    ):
        assert expected in text
    assert '{"train": False}' in text and "def make_model():" in text
