import jax.numpy as jnp
import numpy as np
import pytest

from topojax import groups


def test_by_label_keeps_empty_classes_and_names():
    ids, names = groups.by_label([0, 2, 2], class_names=["a", "b", "c", "d"])
    assert ids.dtype == np.int32 and ids.tolist() == [0, 2, 2]
    assert names == ("a", "b", "c", "d")
    assert groups.by_label(np.array([1.0, 0.0]))[1] == ("0", "1")
    with pytest.raises(ValueError, match="out of range for 2 class_names"):
        groups.by_label([0, 2], class_names=["a", "b"])
    with pytest.raises(ValueError, match="integer class indices"):
        groups.by_label([0.5, 1.0])
    with pytest.raises(ValueError, match=">= 0"):
        groups.by_label([-1, 1])


def test_by_attribute_strings_and_mapping():
    ids, names = groups.by_attribute(np.array(["x", "y", "x", "z"]))
    assert names == ("x", "y", "z") and ids.tolist() == [0, 1, 0, 2]
    ids, names = groups.by_attribute(
        [True, False, True], names={False: "no", True: "yes"}
    )
    assert names == ("no", "yes") and ids.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="no entry for attribute values"):
        groups.by_attribute([1, 2], names={1: "one"})
    with pytest.raises(ValueError, match="got 1 names for 2 distinct values"):
        groups.by_attribute([1, 2], names=["one"])


def test_error_contrast_groups():
    labels = np.array([0, 0, 1, 1, 2])
    logits = np.eye(3)[[0, 1, 1, 1, 0]]  # argmax is taken
    ids, names = groups.error_contrast(labels, logits, class_names=["a", "b", "c"])
    assert names == (
        "a/correct",
        "a/wrong",
        "b/correct",
        "b/wrong",
        "c/correct",
        "c/wrong",
    )
    assert ids.tolist() == [0, 1, 2, 2, 5]
    report = groups.group_report(ids, names, min_size=2)
    assert report.sizes == (1, 1, 2, 0, 0, 1)
    assert report.empty == ("b/wrong", "c/correct")
    assert report.tiny == ("a/correct", "a/wrong", "c/wrong")
    assert "b/wrong: 0 (empty)" in str(report)
    with pytest.raises(ValueError, match="shape of labels"):
        groups.error_contrast(labels, labels[:3])


def test_confusion_cells_only_occurring_pairs():
    labels = np.array([3, 3, 5, 5, 5])
    preds = np.array([3, 5, 5, 3, 3])
    ids, names = groups.confusion_cells(labels, preds)
    assert names == ("3→3", "3→5", "5→3", "5→5")
    assert ids.tolist() == [0, 1, 3, 2, 2]
    ids, names = groups.confusion_cells(
        labels, preds, separator="/", include_correct=False
    )
    assert names == ("3/5", "5/3") and ids.tolist() == [-1, 0, -1, 1, 1]
    report = groups.group_report(ids, names)
    assert report.n_unassigned == 2 and report.as_dict() == {"3/5": 1, "5/3": 2}


def test_combine_cross_product():
    ids, names = groups.combine(
        groups.by_label([0, 1, 1, 0]), groups.by_attribute(["m", "f", "m", "m"])
    )
    assert names == ("0&m", "1&f", "1&m")
    assert ids.tolist() == [0, 1, 2, 0]


def test_group_sizes_errors():
    assert groups.group_sizes([0, 0, 2, -1], 4).tolist() == [2, 0, 1, 0]
    with pytest.raises(ValueError, match=r"in \[-1, 2\)"):
        groups.group_sizes([0, 2], 2)


def test_contrastive_naps_weighted_and_named():
    naps = jnp.array([[1.0, 0.0], [3.0, 2.0], [10.0, 10.0]])
    names = ("a", "b", "c")
    out = groups.contrastive_naps(naps, ["a", "b"], group_names=names)
    np.testing.assert_allclose(out, naps - jnp.array([[2.0, 1.0]]))
    weighted = groups.contrastive_naps(naps, [0, 1], weights=[3, 1, 100])
    np.testing.assert_allclose(weighted[2], [10 - 1.5, 10 - 0.5])
    # an empty reference group (weight 0) is ignored
    ignored = groups.contrastive_naps(naps, [0, 2], weights=[1, 1, 0])
    np.testing.assert_allclose(ignored, naps - naps[0:1])
    with pytest.raises(ValueError, match="zero weight"):
        groups.contrastive_naps(naps, [2], weights=[1, 1, 0])
    with pytest.raises(ValueError, match="unknown group name 'z'"):
        groups.contrastive_naps(naps, ["z"], group_names=names)
    with pytest.raises(ValueError, match="out of range"):
        groups.contrastive_naps(naps, [3])


def test_wrong_minus_correct_skips_empty_classes():
    names = ("0/correct", "0/wrong", "1/correct", "1/wrong")
    naps = jnp.arange(8.0).reshape(4, 2)
    values, kept = groups.wrong_minus_correct(naps, names, counts=[5, 2, 7, 0])
    assert kept == ("0",)
    np.testing.assert_allclose(values, [[2.0, 2.0]])
    values, kept = groups.wrong_minus_correct(
        naps, names, counts=[5, 2, 7, 0], min_size=3
    )
    assert kept == () and values.shape == (0, 2)


# --- error contrast on a model trained with one class's labels partly wrong ---

NOISY, TARGET = 0, 1  # half of the 0s are labelled 1 in training


def _fit(model, x, y, *, steps, key, learning_rate=1e-2, batch_size=64):
    """Adam on cross-entropy, all steps in one jitted scan (one compilation)."""
    import jax
    import optax
    from flax import nnx

    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(learning_rate)
    x, y = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def fit(params, key):
        def step(carry, step_key):
            params, opt_state = carry
            idx = jax.random.randint(step_key, (batch_size,), 0, x.shape[0])

            def loss_fn(params):
                logits = nnx.merge(graphdef, params, rest)(x[idx])
                return optax.softmax_cross_entropy_with_integer_labels(
                    logits, y[idx]
                ).mean()

            updates, opt_state = tx.update(jax.grad(loss_fn)(params), opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        carry = (params, tx.init(params))
        (params, _), _ = jax.lax.scan(step, carry, jax.random.split(key, steps))
        return params

    nnx.update(model, fit(params, key))
    return model


@pytest.fixture(scope="module")
def noisy_run():
    import jax
    from flax import nnx

    from topojax.capture import make_capture
    from topojax.digits import MLP, load_digits_split, predict
    from topojax.profiles import naps, profile

    data = load_digits_split(0)
    labels = np.array(data.y_train)
    rng = np.random.default_rng(0)
    zeros = np.flatnonzero(labels == NOISY)
    labels[rng.permutation(zeros)[: len(zeros) // 2]] = TARGET
    model = MLP(rngs=nnx.Rngs(0), hidden=(32, 16))
    _fit(model, data.x_train, labels, steps=300, key=jax.random.key(1))
    predictions = predict(model, data.x_test)
    group_ids, names = groups.error_contrast(data.y_test, predictions)
    profiles = profile(
        make_capture(model, ["hidden2"]), [(data.x_test, group_ids)], names
    )
    layer = profiles["hidden2"]
    return dict(
        naps=np.asarray(naps(layer)), counts=np.asarray(layer.counts), names=names
    )


def test_error_contrast_reveals_label_noise(noisy_run):
    """Wrong vs correct 0s (label noise: the same kind of images) differ much less
    than wrong vs correct examples of a clean class (atypical images).

    Measure per class c: R_c = |NAP(c/wrong) - NAP(c/correct)| / |NAP(c/correct)|
    in the last hidden layer. Margin: R_noisy <= 0.5 and the mean R over clean
    classes (all but 0 and 1) exceeds it by >= 0.25. Seen: R_0 = 0.25..0.38,
    clean mean 0.70..0.95 over 4 seeds.
    """
    naps, counts, names = noisy_run["naps"], noisy_run["counts"], noisy_run["names"]
    report = groups.group_report(np.repeat(np.arange(20), counts), names)
    assert report.as_dict()["0/wrong"] >= 5 and report.as_dict()["0/correct"] >= 5
    contrast, kept = groups.wrong_minus_correct(naps, names, counts=counts)
    ratio = {
        c: float(
            np.linalg.norm(row) / np.linalg.norm(naps[names.index(f"{c}/correct")])
        )
        for c, row in zip(kept, np.asarray(contrast), strict=True)
    }
    clean = [r for c, r in ratio.items() if c not in (str(NOISY), str(TARGET))]
    assert len(clean) >= 3
    print(f"R_noisy={ratio[str(NOISY)]:.3f} R_clean_mean={np.mean(clean):.3f}")
    assert ratio[str(NOISY)] <= 0.5
    assert np.mean(clean) - ratio[str(NOISY)] >= 0.25


@pytest.mark.xdist_group("demo")
def test_demo_gallery_has_error_contrast_maps(demo_gallery):
    import json

    root = demo_gallery.parent
    files = json.loads((root / "manifest.json").read_text())["files"]
    for page in ("digits-mlp/hidden2", "digits-cnn/conv1"):
        maps = [p for p in files if p.startswith(f"{page}/maps/pca/linear/errors/")]
        names = {p.rsplit("/", 1)[1] for p in maps}
        assert {"3-correct.png", "3-wrong.png"} <= names, page
        html = (root / page / "index.html").read_text()
        assert "3/wrong" in html and "3/correct" in html
