"""Benchmark every topojax layout method against the reference libraries.

For each input (a synthetic layer with known topography at several sizes, and
optionally the NAPs of the demo models' layers) and each method, a fresh worker
process runs the method on seeds 0..3: seed 0 is the first call (compile
included), seeds 1..3 give the warm time (median; ``--warm-runs``); quality is
averaged over seeds 0..2 (``--seeds K``: 0..K-1, run as well if K > 4; the
JSON also holds the population sd of trustworthiness and kNN recall). The
worker reports its peak resident memory above what it held before the first
call (host RSS; XLA CPU buffers included). Rows are printed as one
Markdown table and saved as JSON.

Reference libraries, run like the paper does (cosine metric):
- ``sk-pca``: sklearn PCA on unit rows;  ``sk-tsne``: sklearn TSNE
  (init="pca", learning_rate="auto", metric="cosine");
- ``opentsne``: openTSNE.TSNE(metric="cosine");  ``umap-learn``: umap.UMAP
  (metric="cosine"; a random_state makes it single-threaded);
- ``minisom``: MiniSom, the paper's settings, on unit rows;
- ``nx-graph``: the paper's threshold graph (scipy pdist) laid out by networkx
  ``spring_layout(method="force")``.

``--truth`` adds a ``truth`` row per synthetic input: the neurons' true sheet
positions, the ideal map (what any layout is measured against).

Examples::

    python bench/layouts.py --sizes 256,1024
    python bench/layouts.py --sizes 256 --methods som,graph --peers minisom,nx-graph
    python bench/layouts.py --sizes 4096,16384 --peer-max-n 4096 --demo
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
CHAINS = ("umap+swarm", "tsne+swarm", "graph+swarm", "optimize+grid", "umap+fill")
# Methods with options: name -> (method, keyword arguments).
VARIANTS = {"optimize-nofill": ("optimize", {"fill": False})}
N_QUALITY_SEEDS = int(os.environ.get("TOPOJAX_BENCH_SEEDS", "3"))
N_WARM = int(os.environ.get("TOPOJAX_BENCH_WARM", "3"))

# ---------------------------------------------------------------- peers


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def peer_sk_pca(x, seed):
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(_unit_rows(x))


def peer_sk_tsne(x, seed):
    from sklearn.manifold import TSNE

    return TSNE(
        n_components=2,
        init="pca",
        learning_rate="auto",
        metric="cosine",
        random_state=seed,
    ).fit_transform(x)


def peer_opentsne(x, seed):
    import openTSNE

    return np.asarray(openTSNE.TSNE(metric="cosine", random_state=seed).fit(x))


def peer_umap_learn(x, seed):
    import umap

    return umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(
        x
    )


def peer_minisom(x, seed):
    from minisom import MiniSom

    n, d = x.shape
    side = max(2, int(np.sqrt(n)) + 1)
    units = _unit_rows(x)
    som = MiniSom(side, side, d, sigma=1.0, learning_rate=0.5, random_seed=seed)
    som.random_weights_init(units)
    som.train(units, 10 * n, random_order=True)
    winners = np.array([som.winner(row) for row in units], dtype=float)
    # The paper: neurons sharing a node go on a circle of radius 0.2 around it.
    rng = np.random.default_rng(seed)
    coords = winners.copy()
    _, inverse, counts = np.unique(
        winners, axis=0, return_inverse=True, return_counts=True
    )
    inverse = inverse.ravel()
    for node in np.flatnonzero(counts > 1):
        members = np.flatnonzero(inverse == node)
        angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(len(members)) / len(
            members
        )
        coords[members] += 0.2 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return coords


def peer_nx_graph(x, seed):
    import networkx as nx
    import scipy.sparse.csgraph
    from scipy.spatial.distance import pdist, squareform

    condensed = pdist(x, "cosine")
    dist = squareform(condensed)
    adjacency = dist < np.percentile(condensed, 7.5)
    np.fill_diagonal(adjacency, False)
    n_comp, labels = scipy.sparse.csgraph.connected_components(
        adjacency, directed=False
    )
    graph = nx.from_numpy_array(adjacency.astype(float))
    if n_comp > 1:
        largest = np.argmax(np.bincount(labels))
        inside = np.flatnonzero(labels == largest)
        for comp in set(range(n_comp)) - {largest}:
            members = np.flatnonzero(labels == comp)
            sub = dist[np.ix_(members, inside)]
            i, j = np.unravel_index(np.argmin(sub), sub.shape)
            graph.add_edge(int(members[i]), int(inside[j]))
    pos = nx.spring_layout(graph, seed=seed, method="force")
    return np.array([pos[i] for i in range(len(x))])


PEERS = {
    "sk-pca": peer_sk_pca,
    "sk-tsne": peer_sk_tsne,
    "opentsne": peer_opentsne,
    "umap-learn": peer_umap_learn,
    "minisom": peer_minisom,
    "nx-graph": peer_nx_graph,
}

# ---------------------------------------------------------------- inputs


def synthetic_inputs(sizes: list[int], raw: bool) -> list[Path]:
    sys.path.insert(0, str(HERE))
    from synthetic import synthetic_layer

    paths = []
    for n in sizes:
        layer = synthetic_layer(n, seed=0)
        kinds = [("naps", layer.naps)] + ([("raw", layer.raw)] if raw else [])
        for kind, features in kinds:
            path = OUT / "inputs" / f"synthetic-{kind}-{n}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                path,
                features=features,
                true_coords=layer.true_coords,
                name=f"syn-{kind}",
            )
            paths.append(path)
    return paths


def demo_inputs(seed: int = 0) -> list[Path]:
    """NAP features of the demo models' hidden layers (trains them once, cached)."""
    import jax
    from flax import nnx

    from topojax.capture import make_capture
    from topojax.digits import CNN, DIGIT_NAMES, MLP, load_digits_split, train_model
    from topojax.profiles import layout_features, profile

    paths = []
    data = load_digits_split(seed)
    for name, model_cls, layers in (
        ("mlp", MLP, ["hidden1", "hidden2"]),
        ("cnn", CNN, ["conv1", "conv2"]),
    ):
        wanted = [OUT / "inputs" / f"demo-{name}-{layer}.npz" for layer in layers]
        if all(p.exists() for p in wanted):
            paths += wanted
            continue
        init_key, train_key = jax.random.split(jax.random.key(seed))
        model = model_cls(rngs=nnx.Rngs(init_key))
        train_model(model, data, key=train_key)
        model.eval()
        capture_fn = make_capture(model, layers)
        labels = np.asarray(data.y_test)
        batches = [
            (data.x_test[i : i + 256], labels[i : i + 256])
            for i in range(0, len(labels), 256)
        ]
        profiles = profile(capture_fn, batches, DIGIT_NAMES)
        for layer, path in zip(layers, wanted, strict=True):
            features = np.asarray(layout_features(profiles[layer]))
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, features=features, name=f"{name}-{layer}")
            paths.append(path)
    return paths


# ---------------------------------------------------------------- worker


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> None:
    # Resets VmHWM to the current RSS (Linux >= 4.0). getrusage's ru_maxrss
    # would not do: it survives exec, so a worker would inherit the parent's.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def worker(input_path: Path, method: str) -> dict:
    import jax

    from topojax.layout import get_method
    from topojax.metrics import layout_report

    data = np.load(input_path)
    features = data["features"]
    true_coords = data["true_coords"] if "true_coords" in data else None
    if method == "truth":
        if true_coords is None:
            raise ValueError(f"{input_path.name} has no true coordinates")

        def run(seed):
            # The synthetic neurons' own sheet positions: the ideal map.
            return np.asarray(true_coords, dtype=np.float32)
    elif method in PEERS:
        peer = PEERS[method]

        def run(seed):
            # The paper adds 1e-15 so that dead (all-zero) neurons get no NaN
            # cosine distances, and min-max scales each axis to [0, 1].
            coords = np.asarray(peer(features + 1e-15, seed), dtype=np.float64)
            span = np.ptp(coords, axis=0)
            coords = (coords - coords.min(axis=0)) / np.where(span > 0, span, 1.0)
            return coords.astype(np.float32)
    else:
        name, options = VARIANTS.get(method, (method, {}))
        fn = get_method(name)

        def run(seed):
            return np.asarray(fn(features, key=jax.random.key(seed), **options).coords)

    _reset_peak_rss()
    baseline = _status_mb("VmRSS")
    coords, times = [], []
    for seed in range(max(1 + N_WARM, N_QUALITY_SEEDS)):
        start = time.perf_counter()
        result = run(seed)
        times.append(time.perf_counter() - start)
        if seed < N_QUALITY_SEEDS:
            coords.append(result)
    peak = _status_mb("VmHWM") - baseline
    reports = [
        layout_report(features, c, key=jax.random.key(99), true_coords=true_coords)
        for c in coords
    ]
    quality = {
        name: statistics.mean(r[name] for r in reports)
        for name in reports[0]
        if name != "k"
    }
    quality["trust_sd"] = statistics.pstdev(r["trustworthiness"] for r in reports)
    quality["recall_sd"] = statistics.pstdev(r["knn_recall"] for r in reports)
    quality["blur_auc"] = statistics.mean(blur_auc(features, c) for c in coords)
    return {
        "method": method,
        "input": str(data["name"]),
        "n": int(features.shape[0]),
        "first_s": times[0],
        "warm_s": statistics.median(times[1 : 1 + N_WARM]),
        "peak_mb": peak,
        **quality,
    }


def blur_auc(features: np.ndarray, coords: np.ndarray) -> float:
    """The paper's blur AUC of the maps drawn from ``features`` at ``coords``.

    Each feature column (a group's NAP; at most the first 10) is one map,
    rendered with linear interpolation at 128 px; lower is smoother.
    """
    from topojax.metrics.map_quality import evaluate_maps
    from topojax.render import render

    values = np.asarray(features[:, :10], dtype=np.float32).T
    images = np.asarray(render(coords, values, resolution=128))
    return float(evaluate_maps(images)["blur_auc"])


def run_worker(input_path: Path, method: str, timeout: float) -> dict:
    command = [sys.executable, __file__, "--worker", str(input_path), method]
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    name = str(np.load(input_path)["name"])
    n = int(np.load(input_path)["features"].shape[0])
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return {
            "method": method,
            "input": name,
            "n": n,
            "error": f"timeout {timeout:.0f} s",
        }
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"method": method, "input": name, "n": n, "error": last[:80]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- table


def _fmt(value, digits=3):
    return "—" if value is None or value != value else f"{value:.{digits}f}"


def markdown(rows: list[dict]) -> str:
    header = (
        "| method | input | N | trust@10 | kNN recall@10 | GT recall@10 | overlap "
        "| blur AUC | first call (s) | warm (s) | peak RSS (MB) |"
    )
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['method']} | {r['input']} | {r['n']} | {r['error']} ||||||||"
            )
            continue
        lines.append(
            f"| {r['method']} | {r['input']} | {r['n']} "
            f"| {_fmt(r['trustworthiness'])} ± {_fmt(r['trust_sd'])} "
            f"| {_fmt(r['knn_recall'])} | {_fmt(r.get('gt_recall'))} "
            f"| {_fmt(r['overlap'])} | {_fmt(r.get('blur_auc'), 4)} "
            f"| {_fmt(r['first_s'], 2)} "
            f"| {_fmt(r['warm_s'], 2)} | {_fmt(r['peak_mb'], 0)} |"
        )
    return "\n".join(lines)


def topojax_methods(selected: list[str] | None) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from topojax.layout import METHODS

    names = sorted(METHODS)
    names += [c for c in CHAINS if all(p in METHODS for p in c.split("+"))]
    names += list(VARIANTS)
    return [m for m in names if selected is None or m in selected]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="256,1024", help="synthetic N, comma-separated"
    )
    parser.add_argument(
        "--methods", help="topojax methods/chains (default: all), or 'none'"
    )
    parser.add_argument(
        "--peers", default=",".join(PEERS), help="reference libraries, or 'none'"
    )
    parser.add_argument("--peer-max-n", type=int, default=4096, help="skip peers above")
    parser.add_argument("--raw", action="store_true", help="also raw activations input")
    parser.add_argument(
        "--demo", action="store_true", help="also the demo models' NAPs"
    )
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument(
        "--truth",
        action="store_true",
        help="also a 'truth' row: the synthetic layer's true sheet positions",
    )
    parser.add_argument(
        "--inputs", help="keep only inputs whose file name contains one of these"
    )
    parser.add_argument(
        "--warm-runs",
        type=int,
        help="warm runs after the first call (default 3; 1 for the largest sizes)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        help="seeds 0..K-1 averaged for quality (default 3; env TOPOJAX_BENCH_SEEDS)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per worker (s)")
    parser.add_argument("--json", default=str(OUT / "layouts.json"))
    parser.add_argument(
        "--worker", nargs=2, metavar=("INPUT", "METHOD"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(Path(args.worker[0]), args.worker[1])))
        return 0

    if args.warm_runs is not None:
        # Workers are fresh processes: they read it from the environment.
        os.environ["TOPOJAX_BENCH_WARM"] = str(max(1, args.warm_runs))
    if args.seeds is not None:
        os.environ["TOPOJAX_BENCH_SEEDS"] = str(max(1, args.seeds))
    selected = args.methods.split(",") if args.methods else None
    selected = [] if args.methods == "none" else selected
    methods = topojax_methods(selected)
    peers = [] if args.peers == "none" else args.peers.split(",")
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peers {unknown}; expected some of {list(PEERS)}")
    inputs = []
    if not args.no_synthetic:
        inputs += synthetic_inputs([int(s) for s in args.sizes.split(",")], args.raw)
    if args.demo:
        inputs += demo_inputs()

    if args.inputs:
        inputs = [p for p in inputs if any(s in p.name for s in args.inputs.split(","))]
    rows = []
    for path in inputs:
        n = int(np.load(path)["features"].shape[0])
        names = methods + [p for p in peers if n <= args.peer_max_n]
        if args.truth and "true_coords" in np.load(path):
            names.append("truth")
        for method in names:
            row = run_worker(path, method, args.timeout)
            rows.append(row)
            print(markdown([row]).splitlines()[-1], flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "argv": sys.argv[1:],
    }
    Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print()
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
