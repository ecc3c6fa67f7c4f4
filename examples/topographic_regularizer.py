"""A topographic regulariser: train a layer whose neurons already have a map.

The hidden neurons of a small Flax NNX MLP are placed on a FIXED map (a regular
grid, neuron ``i`` in cell ``i``) before training. While training on
scikit-learn's digits with optax, the loss adds
``weight * map_smoothness(hidden activations, grid edges)``: neurons that are
neighbours on the map are pushed to co-activate (see
`topojax.layout.objectives.map_smoothness`). Afterwards the per-class NAPs of
the layer are rendered at the fixed map and scored with the paper's blur test
(AUC of the error under increasing blur; lower = smoother). A model trained
the same way without the term is the baseline.

Run::

    python examples/topographic_regularizer.py            # full size
    python examples/topographic_regularizer.py --epochs 10 --hidden 36
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from topojax.digits import load_digits_split
from topojax.layout.grid import grid_cells, grid_edges
from topojax.layout.objectives import map_smoothness
from topojax.metrics import evaluate_maps
from topojax.render import render


class TinyMLP(nnx.Module):
    """64 -> hidden (ReLU) -> 10; returns the logits and the hidden layer."""

    def __init__(self, n_hidden: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, n_hidden, rngs=rngs)
        self.head = nnx.Linear(n_hidden, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        hidden = jax.nn.relu(self.hidden(x.reshape(x.shape[0], -1)))
        return self.head(hidden), hidden


@functools.partial(jax.jit, static_argnames=("graphdef", "n_epochs", "batch_size"))
def train(
    graphdef,
    params,
    x_train: jax.Array,
    y_train: jax.Array,
    edges: jax.Array,
    weight: jax.Array,
    key: jax.Array,
    *,
    n_epochs: int,
    batch_size: int = 64,
):
    """All epochs of Adam on cross-entropy + ``weight`` * map smoothness.

    Returns:
        ``(params, losses (n_epochs * n_batches,))``.
    """
    optimizer = optax.adam(3e-3)
    n_batches = x_train.shape[0] // batch_size

    def loss_fn(params, x, y):
        logits, hidden = nnx.merge(graphdef, params)(x)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce + weight * map_smoothness(hidden, edges)

    def step(carry, batch):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def epoch(carry, epoch_key):
        order = jax.random.permutation(epoch_key, x_train.shape[0])
        order = order[: n_batches * batch_size].reshape(n_batches, batch_size)
        return jax.lax.scan(step, carry, (x_train[order], y_train[order]))

    (params, _), losses = jax.lax.scan(
        epoch, (params, optimizer.init(params)), jax.random.split(key, n_epochs)
    )
    return params, losses.reshape(-1)


def class_naps(hidden: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(10, n_hidden)`` class means minus their mean over classes (paper NAPs)."""
    means = np.stack([hidden[labels == c].mean(axis=0) for c in range(10)])
    return means - means.mean(axis=0)


def run(
    *,
    n_hidden: int = 64,
    epochs: int = 30,
    weight: float = 0.3,
    seed: int = 0,
    resolution: int = 64,
) -> dict[str, dict[str, float]]:
    """Train with and without the regulariser; score accuracy and map smoothness.

    Args:
        n_hidden: hidden neurons (placed on a ``ceil(sqrt(n))``-sided grid).
        epochs: training epochs.
        weight: weight of `map_smoothness` in the regularised loss.
        seed: data split, initialisation and batch order.
        resolution: pixels per side of the rendered maps.

    Returns:
        ``{"baseline": {...}, "regularised": {...}}`` each with
        ``test_accuracy``, ``blur_auc`` and ``map_smoothness`` (on the test set).
    """
    data = load_digits_split(seed)
    coords = grid_cells(n_hidden)[:n_hidden]
    edges = jnp.asarray(grid_edges(n_hidden))
    init_key, train_key = jax.random.split(jax.random.key(seed))
    results = {}
    for name, w in (("baseline", 0.0), ("regularised", weight)):
        graphdef, params = nnx.split(TinyMLP(n_hidden, rngs=nnx.Rngs(init_key)))
        params, _ = train(
            graphdef,
            params,
            jnp.asarray(data.x_train),
            jnp.asarray(data.y_train),
            edges,
            jnp.float32(w),
            train_key,
            n_epochs=epochs,
        )
        logits, hidden = nnx.merge(graphdef, params)(jnp.asarray(data.x_test))
        accuracy = float(jnp.mean(jnp.argmax(logits, -1) == data.y_test))
        values = class_naps(np.asarray(hidden), np.asarray(data.y_test))
        images = render(coords, values, resolution=resolution)
        results[name] = {
            "test_accuracy": accuracy,
            "blur_auc": float(evaluate_maps(images)["blur_auc"]),
            "map_smoothness": float(map_smoothness(hidden, edges)),
        }
    return results


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Command-line entry point; prints and returns the results of `run`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--weight", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = run(
        n_hidden=args.hidden, epochs=args.epochs, weight=args.weight, seed=args.seed
    )
    for name, scores in results.items():
        print(
            f"{name:12s} test accuracy {scores['test_accuracy']:.3f}  "
            f"blur AUC {scores['blur_auc']:.4f} (lower = smoother)  "
            f"map smoothness penalty {scores['map_smoothness']:.3f}"
        )
    print(f"({time.perf_counter() - started:.1f} s)")
    return results


if __name__ == "__main__":
    main()
