"""Time `topojax demo` end to end, as a user runs it.

Each run is a fresh process (``python -m topojax demo --out DIR``), so JAX start-up,
every compilation, training, layouts, rendering and file writing are included.
Reports each run's wall time, the median, and the size of the gallery written.

    python bench/demo_time.py            # 3 runs
    python bench/demo_time.py --runs 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gallery_size(path: Path) -> tuple[int, int]:
    """``(files, bytes)`` under ``path``."""
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    times = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "gallery"
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "topojax", "demo", "--out", str(out)],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
            )
            times.append(time.perf_counter() - start)
            files, size = gallery_size(out)
        print(f"run {run}: {times[-1]:.1f} s, {files} files, {size / 1e6:.1f} MB")
    print(f"median wall time over {len(times)} runs: {statistics.median(times):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
