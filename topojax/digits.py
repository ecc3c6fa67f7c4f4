"""The embedded default: scikit-learn's bundled digits and two small NNX models.

The 8x8 digits ship with scikit-learn (no download); the models train with optax
in seconds on a CPU.

Each hidden layer is its own module whose output is post-activation, so capturing
``"hidden1"`` gives what the layer's neurons actually emit (as Keras ``Dense(...,
activation="relu")`` layers do in the paper).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

DIGIT_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["x_train", "y_train", "x_test", "y_test"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class Digits:
    """The digits split into train and test sets.

    Attributes:
        x_train: ``(n_train, 8, 8, 1)`` float32 images in ``[0, 1]``.
        y_train: ``(n_train,)`` int32 labels 0..9.
        x_test: ``(n_test, 8, 8, 1)`` float32 images in ``[0, 1]``.
        y_test: ``(n_test,)`` int32 labels 0..9.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(seed: int = 0, test_fraction: float = 0.25) -> Digits:
    """Load scikit-learn's bundled digits (1797 images) and split them, seeded.

    Args:
        seed: seed of the shuffle (NumPy; host-side data preparation).
        test_fraction: fraction of images held out for testing, in ``(0, 1)``.

    Returns:
        `Digits` with images scaled to ``[0, 1]``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]
    labels = bunch.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(len(labels) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Digits(images[train], labels[train], images[test], labels[test])


class DenseReLU(nnx.Module):
    """A fully connected layer followed by ReLU: one capturable hidden layer."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(in_features, out_features, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, in)`` -> ``(B, out)`` post-ReLU activations."""
        return jax.nn.relu(self.linear(x))


class ConvReLU(nnx.Module):
    """A 3x3 convolution followed by ReLU: one conv layer (channels = neurons)."""

    def __init__(self, in_ch: int, out_ch: int, *, strides: int, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_ch, out_ch, (3, 3), strides=strides, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, H, W, in)`` -> ``(B, H', W', out)`` post-ReLU feature maps."""
        return jax.nn.relu(self.conv(x))


class MLP(nnx.Module):
    """64 -> 256 -> 128 -> 10 with dropout; hidden layers ``hidden1``, ``hidden2``."""

    def __init__(self, *, rngs: nnx.Rngs, hidden: tuple[int, int] = (256, 128)):
        self.hidden1 = DenseReLU(64, hidden[0], rngs=rngs)
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.hidden2 = DenseReLU(hidden[0], hidden[1], rngs=rngs)
        self.head = nnx.Linear(hidden[1], 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, 8, 8, 1)`` images -> ``(B, 10)`` logits."""
        x = x.reshape(x.shape[0], -1)
        x = self.dropout(self.hidden1(x))
        return self.head(self.hidden2(x))


class CNN(nnx.Module):
    """Conv layers ``conv1`` (32 channels), ``conv2`` (64), then a linear head."""

    def __init__(self, *, rngs: nnx.Rngs, channels: tuple[int, int] = (32, 64)):
        self.conv1 = ConvReLU(1, channels[0], strides=1, rngs=rngs)
        self.conv2 = ConvReLU(channels[0], channels[1], strides=2, rngs=rngs)
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.head = nnx.Linear(channels[1] * 16, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, 8, 8, 1)`` images -> ``(B, 10)`` logits."""
        x = self.conv2(self.conv1(x))
        x = self.dropout(x.reshape(x.shape[0], -1))
        return self.head(x)


@nnx.jit
def _train_step(model, optimizer, x, y):
    def loss_fn(model):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def _predict(model, x):
    return jnp.argmax(model(x), axis=-1)


def predict(model: nnx.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Predicted labels ``(n,)`` of ``x`` ``(n, 8, 8, 1)`` in inference mode."""
    model.eval()
    preds = [
        np.asarray(_predict(model, jnp.asarray(x[i : i + batch_size])))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(preds)


def train_model(
    model: nnx.Module,
    data: Digits,
    *,
    key: jax.Array,
    epochs: int = 20,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    on_step=None,
    on_epoch=None,
) -> list[float]:
    """Train ``model`` in place on ``data`` with Adam and cross-entropy.

    The model is a stateful NNX module; training mutates its parameters, as NNX
    intends. Batches are drawn with ``key`` (split per epoch), so training is
    reproducible.

    Args:
        model: an NNX classifier mapping ``(B, 8, 8, 1)`` to ``(B, 10)`` logits.
        data: the digits.
        key: PRNG key for the batch order.
        epochs: passes over the training set.
        batch_size: examples per step (the last partial batch is dropped so one
            program serves every step).
        learning_rate: Adam's step size.
        on_step: optional ``fn(step, model)`` called after every step (e.g. to
            record activation snapshots during training).
        on_epoch: optional ``fn(epoch, model, loss)`` called after every epoch
            (1-based) with its mean training loss (e.g. to record a
            `topojax.training.Frame`).

    Returns:
        The mean training loss of each epoch.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(
            f"epochs and batch_size must be >= 1; got {epochs}, {batch_size}"
        )
    optimizer = nnx.Optimizer(model, optax.adam(learning_rate), wrt=nnx.Param)
    n = len(data.y_train)
    n_batches = max(n // batch_size, 1)
    x_train = jnp.asarray(data.x_train)
    y_train = jnp.asarray(data.y_train)
    losses = []
    step = 0
    for epoch_key in jax.random.split(key, epochs):
        model.train()
        order = jax.random.permutation(epoch_key, n)
        epoch_loss = jnp.zeros(())
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            epoch_loss += _train_step(model, optimizer, x_train[idx], y_train[idx])
            step += 1
            if on_step is not None:
                on_step(step, model)
        losses.append(float(epoch_loss) / n_batches)
        if on_epoch is not None:
            on_epoch(len(losses), model, losses[-1])
    model.eval()
    return losses


def accuracy(model: nnx.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` classified as ``y``."""
    return float(np.mean(predict(model, x) == np.asarray(y)))
