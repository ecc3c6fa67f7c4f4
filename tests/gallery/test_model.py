import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from topojax.gallery import Analysis, GroupSet, LayerView, TrainingSeries


def group_set(name="classes", n_groups=3, n_neurons=5, **kwargs):
    return GroupSet(
        name=name,
        group_names=tuple(f"g{i}" for i in range(n_groups)),
        counts=np.arange(n_groups),
        values=np.arange(n_groups * n_neurons, dtype=float).reshape(
            n_groups, n_neurons
        ),
        **kwargs,
    )


def layer(**kwargs):
    """A valid 5-neuron layer; ``kwargs`` replace single arguments."""
    defaults = dict(
        name="dense",
        n_neurons=5,
        layouts={"pca": np.linspace(0, 1, 10).reshape(5, 2)},
        layout_metrics={"pca": {"trustworthiness": np.float32(0.9)}},
        group_sets=(group_set(n_neurons=5),),
    )
    return LayerView(**{**defaults, **kwargs})


def test_valid_objects_hold_read_only_copies():
    values = np.ones((2, 4))
    gs = GroupSet("s", ("a", "b"), jnp.array([3, 0]), values)
    values[0, 0] = 5.0
    assert gs.values[0, 0] == 1.0
    assert gs.counts.dtype == np.int64 and gs.values.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        gs.values[0, 0] = 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        gs.name = "t"
    view = layer()
    assert view.layout_metrics == {"pca": {"trustworthiness": pytest.approx(0.9)}}
    assert isinstance(view.layout_metrics["pca"]["trustworthiness"], float)
    assert view.methods == ("pca",)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(group_names=("a",)), ValueError, "counts has shape"),
        (dict(group_names=("a", "a")), ValueError, "'a' appears twice"),
        (dict(group_names="ab"), TypeError, "not one string"),
        (dict(counts=[1.5, 2.0]), TypeError, "integers"),
        (dict(counts=[-1, 2]), ValueError, ">= 0"),
        (dict(values=np.ones(2)), ValueError, "2-D"),
        (dict(values=np.ones((3, 4))), ValueError, r"expected \(2, n_neurons\)"),
        (dict(values=[[np.nan, 1.0], [0.0, 0.0]]), ValueError, "finite"),
        (dict(order=(0, 0)), ValueError, "not a permutation"),
        (dict(name=3), TypeError, "name must be a str"),
    ],
)
def test_group_set_rejects(kwargs, error, match):
    args = dict(name="s", group_names=("a", "b"), counts=[1, 2], values=np.ones((2, 2)))
    with pytest.raises(error, match=match):
        GroupSet(**{**args, **kwargs})


def test_group_set_accepts_empty_groups_and_order():
    gs = GroupSet("s", ("a", "b", "c"), [0, 0, 3], np.zeros((3, 2)), order=[2, 0, 1])
    assert gs.order == (2, 0, 1) and gs.n_groups == 3 and gs.n_neurons == 2


def test_training_series_checks_shapes():
    ts = TrainingSeries(("e1", "e2"), ("a", "b"), np.zeros((2, 2, 5)), method="pca")
    assert ts.n_frames == 2
    with pytest.raises(ValueError, match=r"expected \(3, 2, n_neurons\)"):
        TrainingSeries(("e1", "e2", "e3"), ("a", "b"), np.zeros((2, 2, 5)), "pca")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(n_neurons=0), ValueError, "n_neurons must be >= 1"),
        (dict(n_neurons=True), TypeError, "n_neurons must be an int"),
        (dict(layouts={}), ValueError, "non-empty dict"),
        (dict(layouts={"pca": np.zeros((4, 2))}), ValueError, r"expected \(5, 2\)"),
        (dict(layouts={"pca": np.full((5, 2), 2.0)}), ValueError, "outside"),
        (dict(layout_metrics={"tsne": {}}), ValueError, "no layout"),
        (dict(group_sets=()), ValueError, "at least one GroupSet"),
        (
            dict(group_sets=(group_set(n_neurons=4),)),
            ValueError,
            "values for 4 neurons",
        ),
        (dict(group_sets=(group_set(), group_set())), ValueError, "appears twice"),
        (dict(top_inputs=np.zeros((4, 2), int)), ValueError, "top_inputs has shape"),
        (dict(top_inputs=-np.ones((5, 2), int)), ValueError, ">= 0"),
        (dict(profile_features=np.zeros((4, 2))), ValueError, "profile_features"),
        (
            dict(training=TrainingSeries(("e",), ("a",), np.zeros((1, 1, 5)), "umap")),
            ValueError,
            "not one of the layouts",
        ),
        (
            dict(training=TrainingSeries(("e",), ("a",), np.zeros((1, 1, 4)), "pca")),
            ValueError,
            "4 neurons",
        ),
    ],
)
def test_layer_view_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        layer(**kwargs)


def test_analysis_checks_inputs_and_params():
    view = layer(top_inputs=np.array([[0, 1]] * 5))
    inputs = np.zeros((2, 4, 4))
    analysis = Analysis(
        "m", (view,), inputs=inputs, params={"acc": np.float32(0.5), "dims": (1, 2)}
    )
    assert analysis.params == {"acc": 0.5, "dims": [1, 2]}
    assert analysis.inputs.shape == (2, 4, 4)
    with pytest.raises(ValueError, match="has no inputs"):
        Analysis("m", (view,))
    with pytest.raises(ValueError, match="out of range for 1 inputs"):
        Analysis("m", (view,), inputs=np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        Analysis("m", (view,), inputs=np.full((2, 4, 4), 2.0))
    with pytest.raises(ValueError, match="expected"):
        Analysis("m", (view,), inputs=np.zeros((2, 4, 4, 2)))
    with pytest.raises(TypeError, match="keys must be str"):
        Analysis("m", (layer(),), params={1: 2})
    with pytest.raises(TypeError, match="not JSON data"):
        Analysis("m", (layer(),), params={"f": object()})
    with pytest.raises(ValueError, match="appears twice"):
        Analysis("m", (layer(), layer()))
    with pytest.raises(ValueError, match="at least one LayerView"):
        Analysis("m", ())
