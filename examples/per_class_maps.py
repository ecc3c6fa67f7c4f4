"""Per-class topographic maps of a Flax NNX MLP trained on the bundled digits.

What it shows: the basic pipeline, step by step -- train a small NNX MLP
(64 -> 256 -> 128 -> 10) on scikit-learn's 8x8 digits, capture both hidden layers,
compute per-class NAPs (each class's mean activation minus the mean over classes),
lay the neurons out so that neurons with similar profiles are neighbours, and write
a static HTML gallery with one map per class and layer.

Run (about 20 s on a laptop CPU):

    python examples/per_class_maps.py --out gallery-mlp
    # then open gallery-mlp/index.html
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np
from flax import nnx

from topojax.capture import make_capture
from topojax.digits import DIGIT_NAMES, MLP, accuracy, load_digits_split, train_model
from topojax.gallery import Analysis, GroupSet, LayerView, build_gallery
from topojax.groups import by_label, group_report
from topojax.layout import layout
from topojax.profiles import array_batches, layout_features, naps, profile


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gallery-per-class")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, nargs=2, default=(256, 128))
    parser.add_argument("--method", default="umap+swarm", help="layout method or chain")
    parser.add_argument("--resolution", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    key = jax.random.key(args.seed)
    init_key, train_key, layout_key = jax.random.split(key, 3)
    data = load_digits_split(args.seed)

    # 1. a model: any NNX module; here the demo's MLP, trained with optax
    model = MLP(rngs=nnx.Rngs(init_key), hidden=tuple(args.hidden))
    train_model(model, data, key=train_key, epochs=args.epochs)
    test_accuracy = accuracy(model, data.x_test, data.y_test)
    print(f"test accuracy {test_accuracy:.3f}")

    # 2. capture the hidden layers and average them per class (on device)
    layers = ["hidden1", "hidden2"]
    capture_fn = make_capture(model, layers)
    group_ids, group_names = by_label(data.y_test, DIGIT_NAMES)
    print(group_report(group_ids, group_names))
    profiles = profile(
        capture_fn, array_batches(data.x_test, group_ids, 256), group_names
    )

    # 3. one layout per layer from the neurons' class profiles; 4. the gallery
    views = []
    layer_keys = jax.random.split(layout_key, len(layers))
    for layer, layer_key in zip(layers, layer_keys, strict=True):
        layer_profile = profiles[layer]
        features = layout_features(layer_profile)  # (n_neurons, n_classes)
        coords = layout(features, args.method, key=layer_key).coords
        classes = GroupSet(
            name="classes",
            group_names=group_names,
            counts=np.asarray(layer_profile.counts),
            values=np.asarray(naps(layer_profile)),
            description="Per-class NAPs: red = above the mean over classes.",
        )
        views.append(
            LayerView(
                name=layer,
                n_neurons=layer_profile.n_neurons,
                layouts={args.method: np.asarray(coords)},
                layout_metrics={},
                group_sets=(classes,),
            )
        )
    analysis = Analysis(
        model_name="digits MLP",
        layers=tuple(views),
        params={"epochs": args.epochs, "test_accuracy": test_accuracy},
        description="Per-class maps of an NNX MLP (examples/per_class_maps.py).",
    )
    index = build_gallery([analysis], args.out, resolution=args.resolution)
    print(f"open {index}")
    return {"index": index, "accuracy": test_accuracy, "profiles": profiles}


if __name__ == "__main__":
    main(sys.argv[1:])
