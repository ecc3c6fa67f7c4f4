"""Benchmark: render + colour + write many topographic maps as PNG files.

topojax (one plan per layout, one jitted apply for all maps, one jitted colour
lookup, threaded zlib PNG writer) against what people usually write: a loop of
``scipy.interpolate.griddata(method="linear")`` + ``matplotlib.pyplot.imsave``
with the ``bwr`` colour map (colouring + PNG saving by matplotlib/Pillow). A
second peer shares one ``LinearNDInterpolator`` for all maps (triangulation
once, all maps interpolated in one call) and then colours/saves with
``plt.imsave``: the best a careful SciPy user would do.

The peers are timed on ``--baseline-maps`` maps and extrapolated linearly to
``--maps`` (they are per-map loops). Every timing is the median of
``--repeats`` runs; topojax also reports its first (cold, compiling) run.

    PYTHONPATH=. python bench/render.py   # 1000 maps, N=1024, 128x128, linear
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.interpolate import LinearNDInterpolator, griddata  # noqa: E402

from topojax.colors import colorize, symmetric_clim  # noqa: E402
from topojax.png import write_pngs  # noqa: E402
from topojax.render import apply_plan, pixel_centers, render_plan  # noqa: E402


def make_data(n_maps: int, n_neurons: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    coords = rng.random((n_neurons, 2)).astype(np.float32)
    # Smooth group patterns plus noise, like NAPs on a good layout.
    freq = rng.uniform(1, 4, (n_maps, 2))
    phase = rng.uniform(0, 2 * np.pi, (n_maps, 2))
    values = np.sin(freq[:, None, 0] * 2 * coords[None, :, 0] + phase[:, None, 0])
    values = values * np.cos(
        freq[:, None, 1] * 2 * coords[None, :, 1] + phase[:, None, 1]
    )
    values = values + 0.2 * rng.standard_normal((n_maps, n_neurons))
    return coords, values.astype(np.float32)


def topojax_run(coords, values, resolution, out_dir: Path) -> dict[str, float]:
    times = {}
    cpu_start = time.process_time()
    start = time.perf_counter()
    plan = render_plan(coords, resolution=resolution, method="linear")
    jax.block_until_ready(plan)
    times["plan"] = time.perf_counter() - start
    mark = time.perf_counter()
    images = apply_plan(plan, values)
    limit = symmetric_clim(images)  # shared over all maps, one host sync
    times["apply"] = time.perf_counter() - mark
    mark = time.perf_counter()
    rgba = np.asarray(colorize(images, clim=limit))
    times["colorize"] = time.perf_counter() - mark
    mark = time.perf_counter()
    paths = [out_dir / f"map_{g:04d}.png" for g in range(len(values))]
    write_pngs(paths, rgba)
    times["png"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - start
    times["cpu"] = time.process_time() - cpu_start
    return times


def griddata_loop(coords, values, resolution, out_dir: Path) -> tuple[float, float]:
    pixels = pixel_centers(resolution)
    cpu_start = time.process_time()
    start = time.perf_counter()
    limit = float(np.abs(values).max())
    for g, row in enumerate(values):
        image = griddata(coords, row, pixels, method="linear")
        plt.imsave(
            out_dir / f"ref_{g:04d}.png",
            image.reshape(resolution, resolution),
            cmap="bwr",
            vmin=-limit,
            vmax=limit,
        )
    return time.perf_counter() - start, time.process_time() - cpu_start


def shared_interpolator(
    coords, values, resolution, out_dir: Path
) -> tuple[float, float]:
    pixels = pixel_centers(resolution)
    cpu_start = time.process_time()
    start = time.perf_counter()
    images = LinearNDInterpolator(coords, values.T)(pixels)  # (P, G)
    images = images.T.reshape(-1, resolution, resolution)
    limit = float(np.nanmax(np.abs(images)))
    for g, image in enumerate(images):
        plt.imsave(out_dir / f"ref_{g:04d}.png", image, cmap="bwr",
                   vmin=-limit, vmax=limit)  # fmt: skip
    return time.perf_counter() - start, time.process_time() - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=1000)
    parser.add_argument("--neurons", type=int, default=1024)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--baseline-maps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    coords, values = make_data(args.maps, args.neurons)
    scale = args.maps / args.baseline_maps
    print(
        f"{args.maps} maps, N={args.neurons}, {args.resolution}x{args.resolution}, "
        f"linear; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, jax {jax.__version__} on {jax.default_backend()}"
    )
    runs, loop, shared, loop_cpu, shared_cpu = [], [], [], [], []
    sample = values[: args.baseline_maps]
    with tempfile.TemporaryDirectory() as tmp:
        # Run 0 is topojax's cold run (JIT compiles); then the pipelines take
        # turns, so that all of them see the same (shared-machine) load.
        for repeat in range(args.repeats + 1):
            out = Path(tmp) / f"ours_{repeat}"
            out.mkdir()
            runs.append(topojax_run(coords, values, args.resolution, out))
            if repeat == 0:
                continue
            out = Path(tmp) / f"ref_{repeat}"
            out.mkdir()
            wall, cpu = griddata_loop(coords, sample, args.resolution, out)
            loop.append(wall * scale)
            loop_cpu.append(cpu * scale)
            wall, cpu = shared_interpolator(coords, sample, args.resolution, out)
            shared.append(wall * scale)
            shared_cpu.append(cpu * scale)
            print(
                f"repeat {repeat}: topojax {runs[-1]['total']:.2f} s, griddata loop "
                f"{loop[-1]:.2f} s, shared interpolator {shared[-1]:.2f} s "
                f"(extrapolated to {args.maps} maps)"
            )
        cold = runs[0]["total"]
        warm = {key: statistics.median(r[key] for r in runs[1:]) for key in runs[0]}
        png_bytes = sum(p.stat().st_size for p in (Path(tmp) / "ours_1").iterdir())
    loop_s, shared_s = statistics.median(loop), statistics.median(shared)
    loop_c, shared_c = statistics.median(loop_cpu), statistics.median(shared_cpu)
    print(
        "topojax stages (median, s): "
        + ", ".join(f"{k} {v:.3f}" for k, v in warm.items())
    )
    print(f"PNG output: {png_bytes / args.maps / 1024:.1f} KiB per map")
    print(f"| pipeline | seconds for {args.maps} maps | vs topojax warm |")
    print("|---|---:|---:|")
    print(f"| topojax warm (median of {args.repeats}) | {warm['total']:.2f} | 1.0x |")
    print(f"| topojax cold (first run, incl. JIT compile) | {cold:.2f} | "
          f"{cold / warm['total']:.1f}x |")  # fmt: skip
    print(
        f"| griddata + plt.imsave loop (timed on {args.baseline_maps}, x{scale:g}) "
        f"| {loop_s:.2f} | {loop_s / warm['total']:.1f}x |"
    )
    print(
        f"| one LinearNDInterpolator + plt.imsave loop (timed on "
        f"{args.baseline_maps}, x{scale:g}) | {shared_s:.2f} | "
        f"{shared_s / warm['total']:.1f}x |"
    )
    print(f"speed-up vs griddata loop, cold: {loop_s / cold:.1f}x")
    print(
        f"CPU seconds (process, all threads; less sensitive to machine load): "
        f"topojax warm {warm['cpu']:.2f}, griddata loop {loop_c:.2f} "
        f"({loop_c / warm['cpu']:.1f}x), shared interpolator {shared_c:.2f} "
        f"({shared_c / warm['cpu']:.1f}x)"
    )


if __name__ == "__main__":
    main()
