"""``topojax demo``: the whole pipeline on the embedded default, by public API only.

Trains a small NNX MLP and CNN on scikit-learn's bundled digits (recording the
per-class NAPs of the test digits after every epoch with a
`topojax.training.make_recorder`), analyses each with `topojax.analyze` (classes,
errors, exemplars, top-activating inputs, layouts and their metrics, the training
page) and writes a static gallery with `topojax.gallery.build_gallery`. No network
access is needed. A user's own model goes through the same calls.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from pathlib import Path

import jax
from flax import nnx

from topojax.digits import (
    CNN,
    DIGIT_NAMES,
    MLP,
    accuracy,
    load_digits_split,
    train_model,
)
from topojax.gallery import Analysis, build_gallery, check_target
from topojax.pipeline import analyze
from topojax.training import make_recorder, training_run

# The demo's layout methods: topojax's optimiser first (the default view), then
# the paper's preferred UMAP_PSO and PCA for comparison.
DEMO_METHODS: tuple[str, ...] = ("optimize", "umap+swarm", "pca")

__all__ = ["CNN", "DEMO_METHODS", "MLP", "load_digits_split", "run_demo"]


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
    check_target(out_dir, force=force)  # before any training: fail fast
    started = time.perf_counter()
    key = jax.random.key(seed)
    data = load_digits_split(seed)
    specs = [
        ("digits MLP", MLP, ["hidden1", "hidden2"]),
        ("digits CNN", CNN, ["conv1", "conv2"]),
    ]
    # Each model is analysed in a background thread while the next one trains:
    # the layouts' XLA work and the training loop share the cores.
    pending = []
    with concurrent.futures.ThreadPoolExecutor(1) as background:
        for (name, model_cls, layers), model_key in zip(
            specs, jax.random.split(key, len(specs)), strict=True
        ):
            init_key, train_key, analysis_key = jax.random.split(model_key, 3)
            model = model_cls(rngs=nnx.Rngs(init_key))
            recorder = make_recorder(
                model, data.x_test, data.y_test, layers=layers, class_names=DIGIT_NAMES
            )
            frames = [recorder.frame(model, "epoch 0")]

            def on_epoch(epoch, model, loss, recorder=recorder, frames=frames):
                test_accuracy = accuracy(model, data.x_test, data.y_test)
                frames.append(
                    recorder.frame(
                        model, f"epoch {epoch}", loss=loss, accuracy=test_accuracy
                    )
                )

            print(f"training {name} on {len(data.y_train)} digits ...", flush=True)
            train_model(model, data, key=train_key, epochs=epochs, on_epoch=on_epoch)
            test_accuracy = frames[-1].metrics["accuracy"]
            print(f"  {name}: test accuracy {test_accuracy:.3f}", flush=True)
            pending.append(
                background.submit(
                    analyze,
                    model,
                    data.x_test,
                    data.y_test,
                    key=analysis_key,
                    layers=layers,
                    class_names=DIGIT_NAMES,
                    methods=methods,
                    training=training_run(frames),
                    model_name=name,
                    quiet=not progress,
                )
            )
        analyses: list[Analysis] = []
        for future in pending:
            analysis = future.result()
            params = {**analysis.params, "epochs": epochs, "seed": seed}
            analyses.append(dataclasses.replace(analysis, params=params))
    index = build_gallery(analyses, out_dir, force=force, progress=progress)
    n_files = sum(1 for path in out_dir.rglob("*") if path.is_file())
    print(
        f"wrote {n_files} files to {out_dir}/ in {time.perf_counter() - started:.1f} s"
    )
    print(f"open {index.resolve()}")
    return index
