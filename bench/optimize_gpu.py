"""Time `optimize` on one large synthetic layer (target: N = 65536 under 30 s on a GPU).

Self-contained: builds the synthetic sheet layer of `bench/synthetic.py`,
prints the JAX device, then times the affinities (exact k-NN), the first call
of `optimize` (compile included) and warm calls (median), and reports the
quality (GT recall, overlap, and trustworthiness / kNN recall on a random
subset of neurons) and the peak device memory where the backend reports it.

Examples::

    PYTHONPATH=. python bench/optimize_gpu.py                 # N = 65536 (GPU)
    PYTHONPATH=. python bench/optimize_gpu.py --n 2048        # CPU dry run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def _block(tree):
    import jax

    return jax.block_until_ready(tree)


def _peak_memory_mb(device) -> float | None:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats:
        return None
    peak = stats.get("peak_bytes_in_use", stats.get("bytes_in_use"))
    return None if peak is None else peak / 2**20


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=65536, help="neurons")
    parser.add_argument(
        "--steps", type=int, help="optimisation steps (default: optimize's)"
    )
    parser.add_argument(
        "--negatives", type=int, help="random partners per step (default: optimize's)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="warm runs (median)")
    parser.add_argument(
        "--quality-sample", type=int, default=4096, help="neurons for trust/recall"
    )
    parser.add_argument("--no-quality", action="store_true")
    args = parser.parse_args(argv)

    import jax
    from synthetic import synthetic_layer

    from topojax.layout.base import check_features
    from topojax.layout.optimize import layout_affinities, optimize
    from topojax.metrics import (
        ground_truth_recall,
        knn_recall,
        overlap,
        trustworthiness,
    )

    device = jax.devices()[0]
    print(f"device: {device.platform} {device.device_kind} ({jax.__version__})")
    started = time.perf_counter()
    layer = synthetic_layer(args.n, seed=0)
    features = layer.naps
    print(f"synthetic layer N={args.n}: {time.perf_counter() - started:.1f} s (host)")

    x = check_features(features)
    start = time.perf_counter()
    _block(layout_affinities(x))
    first_aff = time.perf_counter() - start
    start = time.perf_counter()
    _block(layout_affinities(x))
    warm_aff = time.perf_counter() - start
    print(
        f"affinities (exact kNN + perplexity): first {first_aff:.2f} s, "
        f"warm {warm_aff:.2f} s"
    )

    options = {"n_steps": args.steps, "n_negatives": args.negatives}
    start = time.perf_counter()
    layout = _block(optimize(features, key=jax.random.key(0), **options))
    first = time.perf_counter() - start
    print(f"optimize first call (compile included): {first:.2f} s", flush=True)
    warm = []
    for seed in range(1, args.repeats + 1):
        start = time.perf_counter()
        _block(optimize(features, key=jax.random.key(seed), **options))
        warm.append(time.perf_counter() - start)
    result = {
        "device": f"{device.platform} {device.device_kind}",
        "n": args.n,
        "steps": args.steps,
        "negatives": args.negatives,
        "first_s": first,
        "warm_s": statistics.median(warm) if warm else None,
        "peak_device_mb": _peak_memory_mb(device),
    }
    print(f"optimize warm: median {result['warm_s']:.2f} s of {warm}")
    print(f"peak device memory: {result['peak_device_mb']}")

    if not args.no_quality:
        coords = np.asarray(layout.coords)
        result["overlap"] = float(overlap(coords))
        result["gt_recall"] = float(ground_truth_recall(layer.true_coords, coords))
        rng = np.random.default_rng(0)
        subset = rng.choice(args.n, min(args.quality_sample, args.n), replace=False)
        result["trust_subset"] = float(
            trustworthiness(features[subset], coords[subset])
        )
        result["recall_subset"] = float(knn_recall(features[subset], coords[subset]))
        print(
            f"quality: overlap {result['overlap']:.4f}, GT recall@10 "
            f"{result['gt_recall']:.3f}, on {len(subset)} random neurons: "
            f"trust@10 {result['trust_subset']:.3f}, kNN recall@10 "
            f"{result['recall_subset']:.3f}"
        )
    print(f"target N=65536 under 30 s warm: {result}")
    return result


if __name__ == "__main__":
    main()
