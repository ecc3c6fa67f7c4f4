"""Is topojax's t-SNE the same optimiser as scikit-learn's exact t-SNE?

On a layer's NAPs (default: the demo MLP's first hidden layer, cached by
``bench/layouts.py --demo`` in ``bench/out/inputs``) this runs, all from
scikit-learn's own inputs (``x + 1e-15``, its raw-feature PCA start scaled to
standard deviation 1e-4, perplexity 30, learning rate "auto"):

1. ``sklearn.manifold.TSNE(method="exact")``;
2. topojax's compiled loop (`topojax.layout.tsne._tsne_core`) on the same
   inputs, without topojax's own conventions (dead neurons as each other's
   neighbours, perplexity clipped to (n - 1) / 3, PCA of the unit rows);
3. the textbook loop with scikit-learn's gradient (``_kl_divergence``) in
   float32 and in float64, to show how far rounding alone moves the result;
4. `topojax.layout.tsne_layout` with its defaults, for reference.

It prints the final KL divergence and trustworthiness / kNN recall@10
(`topojax.metrics.layout_report`) of each.

    python bench/tsne_parity.py
    python bench/tsne_parity.py --input bench/out/inputs/demo-cnn-conv1.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def textbook_loop(p, start, learning_rate, dtype, n_iter=1000, exploration=250):
    """scikit-learn's schedule and update, with its gradient, in ``dtype``."""
    from sklearn.manifold._t_sne import _kl_divergence

    n = start.shape[0]
    y = start.astype(dtype).ravel().copy()
    update, gains = np.zeros_like(y), np.ones_like(y)
    for t in range(n_iter):
        if t == exploration:
            update, gains = np.zeros_like(y), np.ones_like(y)
        exaggeration, momentum = (12.0, 0.5) if t < exploration else (1.0, 0.8)
        _, grad = _kl_divergence(y, p * exaggeration, 1, n, 2)
        gains = np.where(update * grad < 0, gains + 0.2, gains * 0.8)
        gains = np.maximum(gains, 0.01)
        update = momentum * update - learning_rate * gains * grad
        y = (y + update).astype(dtype)
    return y.reshape(n, 2), _kl_divergence(y, p, 1, n, 2)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--input", default=str(HERE / "out" / "inputs" / "demo-mlp-hidden1.npz")
    )
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.manifold._t_sne import _joint_probabilities
    from sklearn.metrics import pairwise_distances

    from topojax.layout.tsne import _tsne_core, tsne_layout
    from topojax.metrics import layout_report

    features = np.load(args.input)["features"]
    x = features + 1e-15
    n = x.shape[0]
    learning_rate = max(n / 12.0 / 4.0, 50.0)
    start = PCA(2, svd_solver="randomized", random_state=0).fit_transform(x)
    start = (start / np.std(start[:, 0]) * 1e-4).astype(np.float32)
    p = _joint_probabilities(
        pairwise_distances(x, metric="cosine").astype(np.float32), 30.0, 0
    )

    def report(label, coords, kl=None):
        r = layout_report(
            features, np.asarray(coords, np.float32), key=jax.random.key(99)
        )
        kl_text = "      " if kl is None else f"{kl:.3f} "
        print(
            f"{label:44s} KL {kl_text} trust {r['trustworthiness']:.3f} "
            f"kNN recall {r['knn_recall']:.3f}",
            flush=True,
        )

    print(f"{args.input}: {n} neurons")
    sk = TSNE(
        2,
        init="pca",
        learning_rate="auto",
        metric="cosine",
        random_state=0,
        method="exact",
    ).fit(x)
    report("scikit-learn TSNE(method='exact')", sk.embedding_, sk.kl_divergence_)
    coords, _, kl = _tsne_core(
        jnp.asarray(x),
        jnp.asarray(start),
        jax.random.key(0),
        jnp.float32(30.0),
        jnp.float32(12.0),
        jnp.int32(250),
        jnp.float32(learning_rate),
        jnp.float32(0.0),
        metric="cosine",
        n_iter=1000,
        k=0,
        block_size=1024,
        every=0,
    )
    report("topojax loop, scikit-learn's inputs", coords, float(kl[-1]))
    for dtype in (np.float32, np.float64):
        coords, kl = textbook_loop(p, start, learning_rate, dtype)
        report(f"textbook loop, sklearn gradient, {dtype.__name__}", coords, kl)
    layout = tsne_layout(features, key=jax.random.key(0))
    report("topojax tsne_layout (its own conventions)", layout.coords)


if __name__ == "__main__":
    main()
