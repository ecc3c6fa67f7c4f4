"""Maps across training: record NAP snapshots in your own optax loop, animate them.

What it shows: `topojax.training.make_nap_recorder` gives a jitted callback; call
it every k steps of an ordinary optax training loop (here: an NNX MLP on the
digits, functional style with ``nnx.split``/``nnx.merge``) and it returns the
per-class NAPs of each hidden layer, on device -- no checkpoints are written.
Afterwards every layer is laid out once (on the final snapshot, or jointly on all
with ``--layout-on joint``), every snapshot is drawn on that one layout with one
shared colour scale, and the script writes

- one animated GIF per layer (one frame per snapshot), and
- a gallery whose layer pages have a training slider.

Run (about 20 s on a laptop CPU):

    python examples/training_maps.py --out gallery-training --animations anim
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from topojax.capture import make_state_capture
from topojax.digits import DIGIT_NAMES, MLP, load_digits_split
from topojax.gallery import Analysis, GroupSet, LayerView, build_gallery
from topojax.groups import by_label
from topojax.training import (
    make_nap_recorder,
    render_frames,
    stack_snapshots,
    training_maps,
    training_series,
    write_animation,
)

LAYERS = ["hidden1", "hidden2"]


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gallery-training")
    parser.add_argument("--animations", default="training-animations")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=25, help="record every k steps")
    parser.add_argument("--hidden", type=int, nargs=2, default=(64, 32))
    parser.add_argument("--method", default="umap+swarm", help="layout method")
    parser.add_argument("--layout-on", choices=("final", "joint"), default="final")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    init_key, train_key, layout_key = jax.random.split(jax.random.key(args.seed), 3)
    data = load_digits_split(args.seed)
    model = MLP(rngs=nnx.Rngs(init_key), hidden=tuple(args.hidden))
    model.eval()  # no dropout in this short run

    # the recorder: fixed inputs (the test digits) grouped by class
    capture_fn, _ = make_state_capture(model, LAYERS)
    group_ids, group_names = by_label(data.y_test, DIGIT_NAMES)
    recorder = make_nap_recorder(capture_fn, data.x_test, group_ids, group_names)

    # an ordinary optax loop on the model's parameters
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    @jax.jit
    def train_step(params, opt_state, key):
        idx = jax.random.randint(key, (64,), 0, x_train.shape[0])

        def loss_fn(params):
            logits = nnx.merge(graphdef, params, rest)(x_train[idx])
            return optax.softmax_cross_entropy_with_integer_labels(
                logits, y_train[idx]
            ).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    snapshots, labels = [], []
    step_keys = jax.random.split(train_key, args.steps)
    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            snapshots.append(recorder(nnx.merge_state(params, rest)))
            labels.append(f"step {step}")
        if step < args.steps:
            params, opt_state, loss = train_step(params, opt_state, step_keys[step])
    print(f"final training loss {float(loss):.3f}; {len(snapshots)} snapshots")

    # one layout per layer, every snapshot drawn on it with one colour scale
    maps = training_maps(
        stack_snapshots(snapshots),
        key=layout_key,
        group_names=group_names,
        labels=labels,
        counts=recorder.counts,
        method=args.method,
        layout_on=args.layout_on,
    )
    animation_dir = Path(args.animations)
    animation_dir.mkdir(parents=True, exist_ok=True)
    views, animations = [], {}
    for layer, layer_maps in maps.items():
        frames = render_frames(layer_maps, resolution=args.resolution, columns=5)
        animations[layer] = write_animation(frames, animation_dir / f"{layer}.gif")
        final = GroupSet(
            "classes",
            group_names,
            recorder.counts,
            layer_maps.naps[-1],
            description=f"Per-class NAPs after {args.steps} steps.",
        )
        views.append(
            LayerView(
                name=layer,
                n_neurons=layer_maps.naps.shape[2],
                layouts={args.method: np.asarray(layer_maps.layout.coords)},
                layout_metrics={},
                group_sets=(final,),
                training=training_series(layer_maps, args.method),
            )
        )
        print(f"{layer}: {len(frames)} frames -> {animations[layer]}")
    analysis = Analysis(
        model_name="digits MLP during training",
        layers=tuple(views),
        params={"steps": args.steps, "every": args.every, "layout_on": args.layout_on},
        description="Maps across training (examples/training_maps.py).",
    )
    index = build_gallery([analysis], args.out, resolution=args.resolution)
    print(f"open {index}")
    return {"index": index, "maps": maps, "animations": animations, "labels": labels}


if __name__ == "__main__":
    main(sys.argv[1:])
