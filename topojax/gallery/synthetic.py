"""A tiny, model-free `Analysis` for trying the gallery and for its tests.

The values are smooth bumps over a random 2-D placement of the neurons, one bump
centre per group, minus the mean over groups (like NAPs), so the maps show
structure; the "inputs" are 8 x 8 images of the same bumps. Nothing is trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from topojax.gallery.model import Analysis, GroupSet, LayerView, TrainingSeries

__all__ = ["synthetic_analysis"]


def _nn_distances(coords: np.ndarray) -> np.ndarray:
    diff = coords[:, None, :] - coords[None, :, :]
    distances = np.sqrt((diff**2).sum(axis=-1))
    np.fill_diagonal(distances, np.inf)
    return distances.min(axis=1)


def _grid(n_neurons: int, rng: np.random.Generator) -> np.ndarray:
    side = int(np.ceil(np.sqrt(n_neurons)))
    cells = np.stack(np.divmod(np.arange(n_neurons), side), axis=1)[:, ::-1]
    coords = (cells + 0.5 + rng.uniform(-0.25, 0.25, size=cells.shape)) / side
    return np.clip(coords, 0.0, 1.0)


def synthetic_analysis(
    *,
    model_name: str = "synthetic model",
    n_neurons: int = 20,
    group_names: Sequence[str] = ("alpha", "beta", "gamma"),
    layer_names: Sequence[str] = ("layer1", "layer2"),
    n_frames: int = 3,
    n_inputs: int = 12,
    top_k: int = 4,
    seed: int = 0,
) -> Analysis:
    """A small synthetic analysis with every optional part filled in.

    Args:
        model_name: the model's name.
        n_neurons: neurons per layer.
        group_names: group names of the ``"classes"`` group set.
        layer_names: one layer each; the first has a training series with
            ``n_frames`` frames (none if 0).
        n_frames: training frames of the first layer.
        n_inputs: number of 8 x 8 input images.
        top_k: top-activating inputs per neuron.
        seed: seed of NumPy's generator (the result depends only on the args).

    Returns:
        An `Analysis` with two layouts per layer (``"random"`` and
        ``"jittered grid"``), their nearest-neighbour statistics as metrics, a
        ``"classes"`` group set, top inputs and profile features.
    """
    rng = np.random.default_rng(seed)
    n_groups = len(group_names)
    centres = rng.uniform(0.15, 0.85, size=(n_groups, 2))
    layers = []
    for index, name in enumerate(layer_names):
        coords = rng.uniform(0.0, 1.0, size=(n_neurons, 2))
        coords[:2] = [[0.0, 0.0], [1.0, 1.0]]  # span the square like a rescaled layout
        grid = _grid(n_neurons, rng)
        squared = ((coords[None, :, :] - centres[:, None, :]) ** 2).sum(axis=-1)
        bumps = np.exp(-squared / 0.08)
        values = bumps - bumps.mean(axis=0, keepdims=True)
        counts = rng.integers(5, 50, size=n_groups)
        metrics = {
            method: {
                "median nn distance": float(np.median(_nn_distances(points))),
                "min nn distance": float(_nn_distances(points).min()),
            }
            for method, points in (("random", coords), ("jittered grid", grid))
        }
        training = None
        if index == 0 and n_frames > 0:
            scales = np.linspace(0.2, 1.0, n_frames)[:, None, None]
            noise = rng.normal(0.0, 0.05, size=(n_frames, n_groups, n_neurons))
            training = TrainingSeries(
                labels=tuple(f"epoch {t + 1}" for t in range(n_frames)),
                group_names=tuple(group_names),
                values=scales * values[None] + noise * (1.0 - scales),
                method="random",
                description="Synthetic: the bumps sharpen over the frames.",
            )
        layers.append(
            LayerView(
                name=name,
                n_neurons=n_neurons,
                layouts={"random": coords, "jittered grid": grid},
                layout_metrics=metrics,
                group_sets=(
                    GroupSet(
                        name="classes",
                        group_names=tuple(group_names),
                        counts=counts,
                        values=values,
                        description="Synthetic bumps, one centre per group.",
                    ),
                ),
                training=training,
                top_inputs=rng.integers(0, n_inputs, size=(n_neurons, top_k)),
                profile_features=values.T.copy(),
            )
        )
    pixel = (np.arange(8) + 0.5) / 8
    xx, yy = np.meshgrid(pixel, 1.0 - pixel)
    input_centres = rng.uniform(0.0, 1.0, size=(n_inputs, 2))
    inputs = np.exp(
        -((xx[None] - input_centres[:, 0, None, None]) ** 2
          + (yy[None] - input_centres[:, 1, None, None]) ** 2) / 0.05
    )  # fmt: skip
    return Analysis(
        model_name=model_name,
        layers=tuple(layers),
        inputs=inputs,
        params={"seed": seed, "n_neurons": n_neurons},
        description="A synthetic analysis (no model was trained).",
    )
