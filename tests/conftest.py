"""Shared fixtures: an explicit PRNG key, strict rank promotion."""

import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
# The suite is dominated by XLA compile time of many small programs; without
# most XLA optimisations it compiles about a quarter faster (same results within
# the tests' tolerances). Benchmarks in bench/ run fully optimised code.
jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


def chromium_path() -> str | None:
    """Debian's chromium, or None (browser tests skip locally, never under CI)."""
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(path):
            return path
    return None


@pytest.fixture
def chromium() -> str:
    path = chromium_path()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI=true but /usr/bin/chromium is missing: .ci/run must install it"
            )
        pytest.skip("Debian chromium not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def demo_gallery(tmp_path_factory):
    """The demo's gallery, built once per test session with short training and
    the fastest layout method (the full demo is measured in bench/). Tests that
    use it are marked ``xdist_group("demo")`` so one worker builds it."""
    from topojax.demo import run_demo

    out = tmp_path_factory.mktemp("demo") / "gallery"
    index = run_demo(out, epochs=2, methods=("pca",), progress=False)
    return index
