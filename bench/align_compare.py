"""Which alignment makes maps of different layers / layouts agree best? (issue 7)

On the demo models (NNX MLP and CNN trained on the bundled digits) this compares

1. across layers (different neurons): each model's second layer aligned to its
   first by `align_by_profiles` (profile-matched Procrustes), the paper's colour
   rotation search (`align_by_colors`, with per-candidate rescaling, no
   reflections), the search without rescaling, the search with reflections, and
   no alignment;
2. same neurons (a layer laid out twice with different keys, as independently
   laid-out checkpoints are): Procrustes (closed form, with reflection) vs the
   paper's colour rotation search.

Measure: map agreement = mean over the 10 classes of the Pearson correlation of
the two rendered maps (64 x 64, linear) over the pixels inside both hulls
(`topojax.align.map_correlation`); for same neurons also the RMS distance between
each neuron's two positions. Several layout keys; mean and range reported.

    PYTHONPATH=. python bench/align_compare.py [--method umap] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from flax import nnx

from topojax import align
from topojax.capture import make_capture
from topojax.digits import CNN, DIGIT_NAMES, MLP, load_digits_split, train_model
from topojax.layout import layout
from topojax.profiles import layout_features, naps, profile

CROSS = {
    "none": lambda lay, p, ref, rp: lay,
    "profiles (Procrustes on matched profiles)": align.align_by_profiles,
    "colors (paper: rescale, no reflection)": align.align_by_colors,
    "colors, no rescale": lambda *a: align.align_by_colors(*a, rescale=False),
    "colors, rescale + reflection": lambda *a: align.align_by_colors(
        *a, reflection=True
    ),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="umap")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    data = load_digits_split(0)
    cross = {name: [] for name in CROSS}
    same = {"none": [], "procrustes": [], "colors (paper)": []}
    same_rmsd = {name: [] for name in same}
    timings = {}
    for model_name, cls, layers in (
        ("MLP", MLP, ["hidden1", "hidden2"]),
        ("CNN", CNN, ["conv1", "conv2"]),
    ):
        model = cls(rngs=nnx.Rngs(0))
        train_model(model, data, key=jax.random.key(1), epochs=args.epochs)
        profiles = profile(
            make_capture(model, layers), [(data.x_test, data.y_test)], DIGIT_NAMES
        )
        values = {layer: np.asarray(naps(profiles[layer])) for layer in layers}
        features = {
            layer: np.asarray(layout_features(profiles[layer])) for layer in layers
        }
        for seed in range(args.seeds):
            keys = jax.random.split(jax.random.key(100 + seed), 3)
            lay = {
                layer: layout(features[layer], args.method, key=k).coords
                for layer, k in zip(layers, keys[:2], strict=True)
            }
            ref, other = layers
            for name, fn in CROSS.items():
                start = time.perf_counter()
                aligned = fn(lay[other], values[other].T, lay[ref], values[ref].T)
                coords = aligned.coords if hasattr(aligned, "coords") else aligned
                timings.setdefault(name, []).append(time.perf_counter() - start)
                cross[name].append(
                    align.map_correlation(lay[ref], values[ref], coords, values[other])
                )
            # same neurons: the first layer laid out again with another key
            again = layout(features[ref], args.method, key=keys[2]).coords
            candidates = {
                "none": again,
                "procrustes": align.align_layout(again, lay[ref]).coords,
                "colors (paper)": align.align_by_colors(
                    again, values[ref].T, lay[ref], values[ref].T
                ).coords,
            }
            for name, coords in candidates.items():
                same[name].append(
                    align.map_correlation(lay[ref], values[ref], coords, values[ref])
                )
                diff = np.asarray(coords) - np.asarray(lay[ref])
                same_rmsd[name].append(float(np.sqrt((diff**2).sum(1).mean())))
        print(f"{model_name} done", flush=True)

    def row(name, vals, reference):
        vals, reference = np.asarray(vals), np.asarray(reference)
        wins = int(np.sum(vals > reference))
        return (
            f"| {name} | {vals.mean():.3f} | {vals.min():.3f} .. {vals.max():.3f} "
            f"| {wins}/{len(vals)} |"
        )

    n = 2 * args.seeds
    paper = "colors (paper: rescale, no reflection)"
    print(f"\nacross layers ({args.method}, 2 models x {args.seeds} keys)")
    print(
        "| alignment | map agreement (mean) | range | better than paper "
        "| median time |\n|---|---|---|---|---|"
    )
    for name, vals in cross.items():
        print(
            row(name, vals, cross[paper])
            + f" {np.median(timings[name]) * 1e3:.0f} ms |"
        )
    print(f"\nsame neurons, second layout ({args.method}, {n} pairs)")
    print(
        "| alignment | map agreement | range | better than paper | position RMSD |"
        "\n|---|---|---|---|---|"
    )
    for name, vals in same.items():
        print(
            row(name, vals, same["colors (paper)"])
            + f" {np.mean(same_rmsd[name]):.3f} |"
        )


if __name__ == "__main__":
    main()
