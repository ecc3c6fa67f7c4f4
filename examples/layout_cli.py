"""Using ``topojax layout`` from the command line on activations from another framework.

What it shows: topojax needs no Flax model. Here a scikit-learn ``MLPClassifier``
stands in for "another framework" (PyTorch, TensorFlow, ...): its hidden-layer
activations on the digits are computed with plain NumPy, reduced to per-class
NAPs, and saved as a ``.npy`` file with one row per neuron. Then the command

    topojax layout features.npy --method umap --out coords.npy --force

(run here as ``python -m topojax layout ...``) lays the neurons out, and the
coordinates are loaded back to render one map per class into a PNG strip.

Run (about 10 s on a laptop CPU):

    python examples/layout_cli.py --workdir layout-cli
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from topojax.colors import colorize
from topojax.png import encode_png
from topojax.render import render


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="layout-cli")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--method", default="umap", help="layout method for the CLI")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    # "another framework": a scikit-learn MLP; its hidden layer is ReLU(x W + b)
    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    classifier = MLPClassifier(
        hidden_layer_sizes=(args.hidden,), max_iter=args.max_iter, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(x, y)
    activations = np.maximum(x @ classifier.coefs_[0] + classifier.intercepts_[0], 0)

    # per-class NAPs in NumPy; the layout input has one row per neuron
    means = np.stack([activations[y == c].mean(axis=0) for c in range(10)])
    class_naps = means - means.mean(axis=0)  # (10, n_neurons)
    features_path = workdir / "features.npy"
    np.save(features_path, class_naps.T.astype(np.float32))  # (n_neurons, 10)

    coords_path = workdir / "coords.npy"
    command = [
        sys.executable, "-m", "topojax", "layout", str(features_path),
        "--method", args.method, "--out", str(coords_path), "--force",
    ]  # fmt: skip
    print("$", " ".join(command[2:]))
    subprocess.run(command, check=True)
    coords = np.load(coords_path)  # (n_neurons, 2) in [0, 1]^2

    # render one map per class with one shared colour scale, side by side
    images = np.asarray(
        colorize(render(coords, class_naps, resolution=args.resolution))
    )
    strip = np.concatenate(list(images), axis=1)  # (R, 10 R, 4)
    png_path = workdir / "maps.png"
    png_path.write_bytes(encode_png(strip))
    print(f"wrote {png_path} ({strip.shape[1]}x{strip.shape[0]} px)")
    return {"coords": coords, "features": class_naps.T, "png": png_path}


if __name__ == "__main__":
    main(sys.argv[1:])
