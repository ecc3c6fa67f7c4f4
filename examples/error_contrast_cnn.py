"""Error-contrast maps of a Flax NNX CNN: how do misclassified inputs activate a layer?

What it shows: grouping the test inputs per class into correctly and wrongly
classified ones (``"3/correct"``, ``"3/wrong"``), the confusion cells that occur
(``"3→5"``), and the contrastive NAP "wrong minus correct" per class. To give the
maps something to find, half of the training labels of one digit (``--noisy 3``)
are replaced by another (``--into 5``): the wrong 3s then come from label noise,
not from unusual images, and their maps look like the correct 3s' maps. The script
prints, per class, ``R = |NAP(c/wrong) - NAP(c/correct)| / |NAP(c/correct)|``:
small for the noisy class (same kind of images), larger for clean classes (their
errors are atypical images). Empty and tiny groups are listed, never fatal.

Run (about 30 s on a laptop CPU):

    python examples/error_contrast_cnn.py --out gallery-errors
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import jax
import numpy as np
from flax import nnx

from topojax.capture import make_capture
from topojax.digits import CNN, DIGIT_NAMES, load_digits_split, predict, train_model
from topojax.gallery import Analysis, GroupSet, LayerView, build_gallery
from topojax.groups import (
    by_label,
    confusion_cells,
    error_contrast,
    group_report,
    wrong_minus_correct,
)
from topojax.layout import layout
from topojax.profiles import array_batches, layout_features, naps, profile


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gallery-errors")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--channels", type=int, nargs=2, default=(32, 64))
    parser.add_argument("--noisy", type=int, default=3, help="class with noisy labels")
    parser.add_argument("--into", type=int, default=5, help="its wrong label")
    parser.add_argument("--noise", type=float, default=0.5, help="fraction relabelled")
    parser.add_argument("--method", default="umap+swarm", help="layout method")
    parser.add_argument("--resolution", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def relabel(labels, source, target, fraction, seed):
    """Replace ``fraction`` of the ``source`` labels by ``target`` (a copy)."""
    labels = np.array(labels)
    members = np.flatnonzero(labels == source)
    chosen = np.random.default_rng(seed).permutation(members)
    labels[chosen[: int(fraction * len(members))]] = target
    return labels


def main(argv=None) -> dict:
    args = parse(argv)
    init_key, train_key, layout_key = jax.random.split(jax.random.key(args.seed), 3)
    data = load_digits_split(args.seed)
    noisy = dataclasses.replace(
        data,
        y_train=relabel(data.y_train, args.noisy, args.into, args.noise, args.seed),
    )
    model = CNN(rngs=nnx.Rngs(init_key), channels=tuple(args.channels))
    train_model(model, noisy, key=train_key, epochs=args.epochs)
    predictions = predict(model, data.x_test)
    print(f"test accuracy {np.mean(predictions == data.y_test):.3f}")

    layers = ["conv1", "conv2"]
    capture_fn = make_capture(model, layers)

    def profiles_of(grouping):
        group_ids, group_names = grouping
        keep = group_ids >= 0  # confusion cells without the diagonal use -1
        batches = array_batches(data.x_test[keep], group_ids[keep], 256)
        return profile(capture_fn, batches, group_names)

    class_groups = by_label(data.y_test, DIGIT_NAMES)
    error_groups = error_contrast(data.y_test, predictions, DIGIT_NAMES)
    cell_groups = confusion_cells(
        data.y_test, predictions, DIGIT_NAMES, include_correct=False
    )
    report = group_report(*error_groups, min_size=3)
    print("empty groups:", ", ".join(report.empty) or "none")
    print("tiny groups (< 3):", ", ".join(report.tiny) or "none")
    by_class = profiles_of(class_groups)
    by_error = profiles_of(error_groups)
    # examples of no confusion cell: every prediction is right; skip that page
    by_cell = profiles_of(cell_groups) if cell_groups[1] else None

    views, ratios = [], {}
    for layer, layer_key in zip(
        layers, jax.random.split(layout_key, len(layers)), strict=True
    ):
        coords = layout(layout_features(by_class[layer]), args.method, key=layer_key)
        errors = by_error[layer]
        error_naps = np.asarray(naps(errors))
        counts = np.asarray(errors.counts)
        contrast, kept = wrong_minus_correct(
            error_naps, errors.group_names, counts=counts
        )
        ratios[layer] = {
            c: float(
                np.linalg.norm(row)
                / np.linalg.norm(error_naps[errors.group_names.index(f"{c}/correct")])
            )
            for c, row in zip(kept, np.asarray(contrast), strict=True)
        }
        group_sets = [
            GroupSet(
                "classes",
                DIGIT_NAMES,
                np.asarray(by_class[layer].counts),
                np.asarray(naps(by_class[layer])),
                description="Per-class NAPs.",
            ),
            GroupSet(
                "errors",
                errors.group_names,
                counts,
                error_naps,
                description="Per class, correctly vs wrongly classified test "
                "digits (NAPs over all non-empty groups).",
                order=tuple(range(len(errors.group_names))),
            ),
        ]
        if kept:
            wrong_counts = [
                counts[errors.group_names.index(f"{c}/wrong")] for c in kept
            ]
            group_sets.append(
                GroupSet(
                    "wrong minus correct",
                    tuple(f"{c}: wrong − correct" for c in kept),
                    np.asarray(wrong_counts),
                    np.asarray(contrast),
                    description="Contrastive NAPs: each class's wrong minus its "
                    "correct NAP (classes with both groups non-empty).",
                    order=tuple(range(len(kept))),
                )
            )
        if by_cell is not None:
            cells = by_cell[layer]
            group_sets.append(
                GroupSet(
                    "confusions",
                    cells.group_names,
                    np.asarray(cells.counts),
                    np.asarray(naps(cells)),
                    description="Misclassified test digits by (true → predicted).",
                )
            )
        views.append(
            LayerView(
                name=layer,
                n_neurons=by_class[layer].n_neurons,
                layouts={args.method: np.asarray(coords.coords)},
                layout_metrics={},
                group_sets=tuple(group_sets),
            )
        )
        line = ", ".join(f"{c}: {r:.2f}" for c, r in ratios[layer].items())
        print(f"{layer}: R per class = {line}")
    analysis = Analysis(
        model_name="digits CNN (noisy labels)",
        layers=tuple(views),
        params={
            "noisy_class": args.noisy,
            "relabelled_as": args.into,
            "noise": args.noise,
            "epochs": args.epochs,
        },
        description="Error-contrast maps (examples/error_contrast_cnn.py).",
    )
    index = build_gallery([analysis], args.out, resolution=args.resolution)
    print(f"open {index}")
    return {"index": index, "ratios": ratios, "report": report}


if __name__ == "__main__":
    main(sys.argv[1:])
