"""``topojax demo``: the whole pipeline on the embedded default.

Trains a small NNX MLP and CNN on scikit-learn's bundled digits, captures every
hidden layer, computes per-class NAPs, lays the neurons out with several methods,
renders the maps and writes a static gallery. No network access is needed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from topojax.capture import make_capture, make_state_capture
from topojax.digits import (
    CNN,
    DIGIT_NAMES,
    MLP,
    Digits,
    accuracy,
    load_digits_split,
    predict,
    train_model,
)
from topojax.gallery import (
    Analysis,
    GroupSet,
    LayerView,
    TrainingSeries,
    build_gallery,
)
from topojax.groups import error_contrast
from topojax.layout import get_method
from topojax.metrics import layout_report
from topojax.profiles import layout_features, naps, profile
from topojax.training import make_nap_recorder, stack_snapshots

# The demo's layout methods: topojax's optimiser first (the default view), then
# the paper's preferred UMAP_PSO and PCA for comparison.
DEMO_METHODS: tuple[str, ...] = ("optimize", "umap+swarm", "pca")
TOP_INPUTS = 8

__all__ = [
    "CNN",
    "DEMO_METHODS",
    "MLP",
    "analyse_model",
    "load_digits_split",
    "run_demo",
    "start_analysis",
    "train_model",
]


def _batches(x: np.ndarray, group_ids: np.ndarray, batch_size: int = 256):
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], group_ids[start : start + batch_size]


def top_activating(activations: jax.Array, k: int) -> np.ndarray:
    """Indices ``(n_neurons, k)`` of the inputs that activate each neuron most.

    Args:
        activations: ``(n_inputs, ..., n_neurons)``; spatial axes are averaged.
        k: inputs per neuron.
    """
    per_input = activations.reshape(activations.shape[0], -1, activations.shape[-1])
    per_input = per_input.mean(axis=1)
    k = min(k, per_input.shape[0])
    return np.asarray(jax.lax.top_k(per_input.T, k)[1])


def analyse_model(
    model: nnx.Module,
    model_name: str,
    layers: list[str],
    data: Digits,
    *,
    key: jax.Array,
    methods: tuple[str, ...] = DEMO_METHODS,
    progress: bool = True,
) -> Analysis:
    """Profile, lay out and measure every layer of a trained digits model.

    Args:
        model: a trained NNX model (put in eval mode here).
        model_name: shown in the gallery.
        layers: layer paths to analyse, e.g. ``["hidden1", "hidden2"]``.
        data: the digits; the test split is profiled.
        key: PRNG key, split per layer and method.
        methods: layout method names (`topojax.layout.METHODS` or chains).
        progress: show a progress bar.

    Returns:
        The gallery's `Analysis` of this model.
    """
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        finish = start_analysis(
            model,
            model_name,
            layers,
            data,
            key=key,
            methods=methods,
            pool=pool,
            progress=progress,
        )
        return finish()


def start_analysis(
    model: nnx.Module,
    model_name: str,
    layers: list[str],
    data: Digits,
    *,
    key: jax.Array,
    methods: tuple[str, ...],
    pool: concurrent.futures.Executor,
    progress: bool = True,
) -> Callable[[], Analysis]:
    """`analyse_model` in two halves, so that layouts run while other work goes on.

    Profiles the model now, in the calling thread (capture traces the model),
    submits every (layer, method) layout to ``pool`` and returns ``finish``,
    which waits for them and assembles the `Analysis`. Layouts of different
    sizes compile separately; XLA compiles and runs outside the GIL, so a thread
    pool keeps every core busy.
    """
    model.eval()
    capture_fn = make_capture(model, layers)
    labels = np.asarray(data.y_test)
    profiles = profile(capture_fn, _batches(data.x_test, labels), DIGIT_NAMES)
    activations = capture_fn(jnp.asarray(data.x_test))
    top_inputs = {
        layer: top_activating(activations[layer], TOP_INPUTS) for layer in layers
    }
    steps = tqdm(
        total=len(layers) * len(methods),
        desc=f"{model_name}: layouts",
        disable=not progress,
        leave=False,
    )

    def fit(features, method, method_key):
        fit_key, report_key = jax.random.split(method_key)
        coords = np.asarray(get_method(method)(features, key=fit_key).coords)
        report = layout_report(features, coords, key=report_key)
        steps.update()
        return coords, report

    features, futures = {}, {}
    for layer, layer_key in zip(
        layers, jax.random.split(key, len(layers)), strict=True
    ):
        features[layer] = np.asarray(layout_features(profiles[layer]))
        for method, method_key in zip(
            methods, jax.random.split(layer_key, len(methods)), strict=True
        ):
            futures[layer, method] = pool.submit(
                fit, features[layer], method, method_key
            )

    def finish() -> Analysis:
        views = []
        for layer in layers:
            layer_profile = profiles[layer]
            fitted = {m: futures[layer, m].result() for m in methods}
            class_set = GroupSet(
                name="classes",
                group_names=DIGIT_NAMES,
                counts=np.asarray(layer_profile.counts),
                values=np.asarray(naps(layer_profile)),
                description="Per-class NAPs: each class's mean activation minus the "
                "mean over classes.",
            )
            views.append(
                LayerView(
                    name=layer,
                    n_neurons=features[layer].shape[0],
                    layouts={m: fitted[m][0] for m in methods},
                    layout_metrics={m: fitted[m][1] for m in methods},
                    group_sets=(class_set,),
                    top_inputs=top_inputs[layer],
                )
            )
        steps.close()
        return Analysis(
            model_name=model_name,
            layers=tuple(views),
            inputs=np.asarray(data.x_test[..., 0]),
            params={"methods": list(methods), "profiled_split": "test"},
        )

    return finish


def run_demo(
    out_dir: str | Path = "topojax-gallery",
    *,
    seed: int = 0,
    force: bool = False,
    epochs: int = 15,
    methods: tuple[str, ...] = DEMO_METHODS,
    progress: bool = True,
) -> Path:
    """Train the demo models, analyse them and write the gallery.

    Args:
        out_dir: where the gallery goes (replaced atomically if it is a gallery).
        seed: seeds data split, initialisation, training and layouts.
        force: allow replacing a directory that is not a topojax gallery.
        epochs: training epochs per model.
        methods: layout methods shown in the gallery.
        progress: show progress bars.

    Returns:
        Path of the gallery's ``index.html``.
    """
    out_dir = Path(out_dir)
    started = time.perf_counter()
    key = jax.random.key(seed)
    data = load_digits_split(seed)
    specs = [
        ("digits MLP", MLP, ["hidden1", "hidden2"]),
        ("digits CNN", CNN, ["conv1", "conv2"]),
    ]
    # Each model's layouts run in the pool while the next model trains; the
    # error and training pages (which trace the models again) come after.
    pending = []
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for (name, model_cls, layers), model_key in zip(
            specs, jax.random.split(key, len(specs)), strict=True
        ):
            init_key, train_key, layout_key = jax.random.split(model_key, 3)
            model = model_cls(rngs=nnx.Rngs(init_key))
            on_step, snapshots, labels = _record_epochs(model, layers, data)
            print(f"training {name} on {len(data.y_train)} digits ...", flush=True)
            train_model(model, data, key=train_key, epochs=epochs, on_step=on_step)
            test_accuracy = accuracy(model, data.x_test, data.y_test)
            print(f"  {name}: test accuracy {test_accuracy:.3f}", flush=True)
            finish = start_analysis(
                model,
                name,
                layers,
                data,
                key=layout_key,
                methods=methods,
                pool=pool,
                progress=progress,
            )
            pending.append((finish, model, snapshots, labels, test_accuracy))
        analyses = []
        for finish, model, snapshots, labels, test_accuracy in pending:
            analysis = _with_error_and_training_pages(
                finish(), model, data, stack_snapshots(snapshots), labels
            )
            analyses.append(
                _with_params(
                    analysis, test_accuracy=test_accuracy, epochs=epochs, seed=seed
                )
            )
    index = build_gallery(analyses, out_dir, force=force)
    n_files = sum(1 for path in out_dir.rglob("*") if path.is_file())
    print(
        f"wrote {n_files} files to {out_dir}/ in {time.perf_counter() - started:.1f} s"
    )
    print(f"open {index.resolve()}")
    return index


def _with_params(analysis: Analysis, **params) -> Analysis:
    import dataclasses

    return dataclasses.replace(analysis, params={**analysis.params, **params})


# --- error-contrast and training pages (issue 7) ---
def _record_epochs(model: nnx.Module, layers: list[str], data: Digits, batch_size=64):
    """An ``on_step`` for `train_model` recording per-class NAPs every epoch.

    Records the test digits' NAPs before training and after every epoch (one
    jitted forward pass each); returns ``(on_step, snapshots, labels)``.
    """
    capture_state, _ = make_state_capture(model, layers)
    recorder = make_nap_recorder(capture_state, data.x_test, data.y_test, DIGIT_NAMES)
    steps_per_epoch = max(len(data.y_train) // batch_size, 1)
    snapshots, labels = [recorder(nnx.state(model))], ["epoch 0"]

    def on_step(step: int, model: nnx.Module) -> None:
        if step % steps_per_epoch == 0:
            snapshots.append(recorder(nnx.state(model)))
            labels.append(f"epoch {step // steps_per_epoch}")

    return on_step, snapshots, labels


def _with_error_and_training_pages(
    analysis: Analysis, model: nnx.Module, data: Digits, series: dict, labels: list
) -> Analysis:
    """Add the "errors" group set and the training series to every layer.

    "errors": per class, the test digits classified correctly and wrongly. The
    training series is drawn on the first layout (made from the final model).
    """
    layers = [view.name for view in analysis.layers]
    group_ids, group_names = error_contrast(
        data.y_test, predict(model, data.x_test), DIGIT_NAMES
    )
    errors = profile(
        make_capture(model, layers), _batches(data.x_test, group_ids), group_names
    )
    views = []
    for view in analysis.layers:
        error_set = GroupSet(
            name="errors",
            group_names=group_names,
            counts=np.asarray(errors[view.name].counts),
            values=np.asarray(naps(errors[view.name])),
            description="Per class, the test digits classified correctly and "
            "wrongly (NAPs over the non-empty groups; n = group size).",
            order=tuple(range(len(group_names))),
        )
        training = TrainingSeries(
            labels=tuple(labels),
            group_names=DIGIT_NAMES,
            values=np.asarray(series[view.name]),
            method=view.methods[0],
            description="Per-class NAPs of the test digits before training and "
            "after every epoch, on the final model's layout.",
        )
        views.append(
            dataclasses.replace(
                view, group_sets=(*view.group_sets, error_set), training=training
            )
        )
    return dataclasses.replace(analysis, layers=tuple(views))
