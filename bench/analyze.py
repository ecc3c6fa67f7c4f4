"""Scale of `topojax.analyze` on one machine: a CNN on 32x32x3 inputs, streamed.

The model: conv 3->64 (stride 2) + ReLU, conv 64->512 (stride 2) + ReLU
(``conv2.relu``: 512 channels), mean over positions, dense 512->2048 + ReLU
(``dense.relu``: 2048 neurons), dense 2048->10. Untrained (scale, not accuracy).
The data: ``--n`` inputs made batch by batch from the batch index (never all in
memory), as a function returning a fresh iterator of ``(x, y)`` batches, i.e. as a
data loader hands them over.

Each configuration runs in a fresh process and reports its wall time, the time of
each phase, and the process's peak resident memory (``ru_maxrss``), so the peak
for 5,000 and for 20,000 inputs can be compared. ``--forward`` also times a plain
jitted forward pass over the same batches and the capture + profile passes of
`analyze` alone (their throughput ratio; the issue's GPU target is >= 0.8x).

    python bench/analyze.py                       # n = 5000 and 20000, optimize
    python bench/analyze.py --sizes 20000 --forward
    python bench/analyze.py --one 20000           # one run in this process
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

N_CLASSES = 10


def make_model(key):
    import jax
    from flax import nnx

    class ScaleCNN(nnx.Module):
        def __init__(self, rngs):
            self.conv1 = nnx.Conv(3, 64, (3, 3), strides=2, rngs=rngs)
            self.conv2 = nnx.Conv(64, 512, (3, 3), strides=2, rngs=rngs)
            self.dense = nnx.Linear(512, 2048, rngs=rngs)
            self.head = nnx.Linear(2048, N_CLASSES, rngs=rngs)

        def __call__(self, x):
            h = nnx.relu(self.conv1(x))
            h = nnx.relu(self.conv2(h))
            h = nnx.relu(self.dense(h.mean(axis=(1, 2))))
            return self.head(h)

    return ScaleCNN(nnx.Rngs(params=jax.random.fold_in(key, 0)))


def batches(n: int, batch_size: int):
    """A function returning a fresh iterator over ``n`` synthetic inputs."""
    import numpy as np

    def fresh():
        for start in range(0, n, batch_size):
            size = min(batch_size, n - start)
            rng = np.random.default_rng(start)
            y = rng.integers(0, N_CLASSES, size)
            x = rng.normal(0, 1, (size, 32, 32, 3)).astype(np.float32)
            x[np.arange(size), :, :, y % 3] += (y / N_CLASSES)[:, None, None]
            yield x, y

    return fresh


def forward_throughput(model, data, batch_size: int) -> dict:
    """Inputs per second: a plain jitted forward vs capture + profile of analyze."""
    import jax
    import numpy as np
    from flax import nnx

    import topojax as tj

    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))

    def run_forward():
        n = 0
        for x, _ in data():
            forward(state, x).block_until_ready()
            n += len(x)
        return n

    capture_fn = tj.make_capture(model, ["conv2.relu", "dense.relu"])

    def run_profile():
        n = 0
        ids = []

        def stream():
            nonlocal n
            for x, y in data():
                n += len(x)
                ids.append(y)
                yield x, y

        profiles = tj.profile(capture_fn, stream(), [str(c) for c in range(10)])
        np.asarray(profiles["dense.relu"].sums)
        return n

    result = {}
    for name, fn in (("forward", run_forward), ("capture_profile", run_profile)):
        fn()  # compile
        times = []
        for _ in range(3):
            start = time.perf_counter()
            n = fn()
            times.append(time.perf_counter() - start)
        result[name] = n / sorted(times)[1]
    result["ratio"] = result["capture_profile"] / result["forward"]
    return result


def one_run(n: int, batch_size: int, methods: tuple[str, ...], forward: bool) -> dict:
    import jax

    import topojax as tj

    started = time.perf_counter()
    model = make_model(jax.random.key(0))
    data = batches(n, batch_size)
    analysis = tj.analyze(
        model,
        data,
        key=jax.random.key(1),
        layers=["conv2.relu", "dense.relu"],
        methods=methods,
        batch_size=batch_size,
        quiet=True,
    )
    analyze_s = time.perf_counter() - started
    result = {
        "n": n,
        "analyze_s": round(analyze_s, 2),
        "neurons": [layer.n_neurons for layer in analysis.layers],
        "display_inputs": int(analysis.inputs.shape[0]),
        "peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "devices": [str(d) for d in jax.devices()],
    }
    if forward:
        result["throughput"] = forward_throughput(model, data, batch_size)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,20000")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--methods", default="optimize")
    parser.add_argument("--forward", action="store_true")
    parser.add_argument("--one", type=int, help="run one size in this process")
    args = parser.parse_args(argv)
    methods = tuple(args.methods.split(","))
    if args.one is not None:
        result = one_run(args.one, args.batch_size, methods, args.forward)
        print(json.dumps(result))
        return 0
    for n in (int(size) for size in args.sizes.split(",")):
        command = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            "--batch-size",
            str(args.batch_size),
            "--methods",
            args.methods,
        ]
        if args.forward:
            command.append("--forward")
        output = subprocess.run(command, check=True, capture_output=True, text=True)
        print(output.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
