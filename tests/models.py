"""Small test models written the way users write them (no tests in this module).

Three architectures, each with a ``make_*`` helper returning an initialised
model. Activations are called functionally in the forward pass, so their
outputs are layers of their own (see `topojax.capture`). Layer names, in
forward order, as `topojax.capture.list_layers` reports them:

`FunctionalMLP` (NNX), input ``(B, 8, 8, 1)`` images, output ``(B, 10)``::

    hidden1, hidden1.relu, hidden2, hidden2.gelu, out

`TinyTransformer` (NNX), input ``(B, 6)`` int tokens in ``[0, 16)``, output
``(B, 3)``; one pre-LN block ``block`` (MultiHeadAttention's own projections
appear as ``block.attn.query`` etc.)::

    embed, block.ln1, block.attn.query, block.attn.key, block.attn.value,
    block.attn.out, block.attn, block.ln2, block.mlp_in, block.mlp_in.gelu,
    block.mlp_out, block, head

`LinenResNet` (Linen), input ``(B, 8, 8, 1)``, output ``(B, 10)``, called as
``model.apply(variables, x, train=False)``; a stem and two residual blocks::

    Conv_0, BatchNorm_0, BatchNorm_0.relu,
    ResidualBlock_0.Conv_0, ResidualBlock_0.BatchNorm_0,
    ResidualBlock_0.BatchNorm_0.relu, ResidualBlock_0.Conv_1,
    ResidualBlock_0.BatchNorm_1, ResidualBlock_0.relu, ResidualBlock_0,
    (the same seven for ResidualBlock_1), Dense_0
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

IMAGE_SHAPE = (8, 8, 1)
N_CLASSES = 10
VOCAB = 16
SEQ_LEN = 6
WIDTH = 16
N_HEADS = 2
MLP_WIDTH = 32
N_TOKEN_CLASSES = 3


class FunctionalMLP(nnx.Module):
    """64 -> 32 -> 16 -> 10 with functional activations.

    Layers ``hidden1`` and ``hidden2`` are the pre-activation ``nnx.Linear``
    outputs; ``hidden1.relu`` and ``hidden2.gelu`` what the neurons emit.
    """

    def __init__(self, *, rngs: nnx.Rngs, hidden: tuple[int, int] = (32, 16)):
        n_inputs = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
        self.hidden1 = nnx.Linear(n_inputs, hidden[0], rngs=rngs)
        self.hidden2 = nnx.Linear(hidden[0], hidden[1], rngs=rngs)
        self.out = nnx.Linear(hidden[1], N_CLASSES, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, 8, 8, 1)`` images -> ``(B, 10)`` logits."""
        x = x.reshape(x.shape[0], -1)
        h = nnx.relu(self.hidden1(x))
        h = jax.nn.gelu(self.hidden2(h))
        return self.out(h)


class TransformerBlock(nnx.Module):
    """Pre-LN block: ``x + attn(ln1(x))``, then ``x + mlp_out(gelu(mlp_in(ln2(x))))``.

    ``gelu`` is ``nnx.gelu``; ``attn`` is self-attention without a mask.
    """

    def __init__(self, *, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(WIDTH, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=N_HEADS, in_features=WIDTH, decode=False, rngs=rngs
        )
        self.ln2 = nnx.LayerNorm(WIDTH, rngs=rngs)
        self.mlp_in = nnx.Linear(WIDTH, MLP_WIDTH, rngs=rngs)
        self.mlp_out = nnx.Linear(MLP_WIDTH, WIDTH, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, T, D)`` -> ``(B, T, D)`` residual stream."""
        x = x + self.attn(self.ln1(x))
        return x + self.mlp_out(nnx.gelu(self.mlp_in(self.ln2(x))))


class TinyTransformer(nnx.Module):
    """Token + learned position embedding, one pre-LN block, mean-pool, classifier."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(VOCAB, WIDTH, rngs=rngs)
        self.position = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (SEQ_LEN, WIDTH))
        )
        self.block = TransformerBlock(rngs=rngs)
        self.head = nnx.Linear(WIDTH, N_TOKEN_CLASSES, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """``(B, T)`` int tokens -> ``(B, 3)`` logits."""
        x = self.embed(tokens) + self.position[...][None]
        x = self.block(x)
        return self.head(x.mean(axis=1))


class ResidualBlock(nn.Module):
    """Conv-BN-relu-Conv-BN plus the skip, then relu; keeps the channel count."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        y = nn.Conv(self.features, (3, 3))(x)
        y = nn.relu(nn.BatchNorm(use_running_average=not train)(y))
        y = nn.Conv(self.features, (3, 3))(y)
        y = nn.BatchNorm(use_running_average=not train)(y)
        return nn.relu(y + x)


class LinenResNet(nn.Module):
    """Conv stem (8 channels), two residual blocks, global average pool, Dense head."""

    features: int = 8
    n_blocks: int = 2

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """``(B, 8, 8, 1)`` images -> ``(B, 10)`` logits."""
        x = nn.Conv(self.features, (3, 3))(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        for _ in range(self.n_blocks):
            x = ResidualBlock(self.features)(x, train)
        return nn.Dense(N_CLASSES)(x.mean(axis=(1, 2)))


def make_functional_mlp(key: jax.Array) -> FunctionalMLP:
    """An initialised `FunctionalMLP` (hidden sizes 32, 16)."""
    return FunctionalMLP(rngs=nnx.Rngs(params=key))


def make_transformer(key: jax.Array) -> TinyTransformer:
    """An initialised `TinyTransformer` (vocab 16, T 6, D 16, 2 heads)."""
    return TinyTransformer(rngs=nnx.Rngs(params=key))


def make_resnet(key: jax.Array) -> tuple[LinenResNet, dict]:
    """An initialised `LinenResNet` and its variables (``params``, ``batch_stats``).

    The running statistics are the initial ones (mean 0, variance 1).
    """
    model = LinenResNet()
    variables = model.init(key, jnp.zeros((1, *IMAGE_SHAPE)), train=False)
    return model, variables
