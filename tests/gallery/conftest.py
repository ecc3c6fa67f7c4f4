"""Fixtures of the gallery tests: tiny synthetic analyses, some with hostile names."""

import pytest

from topojax.gallery import synthetic_analysis

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "</script><script>alert(1)</script>"
HOSTILE_GROUPS = ("alpha", XSS_IMG, XSS_SCRIPT)


@pytest.fixture(scope="session")
def analysis():
    return synthetic_analysis(n_neurons=20, n_frames=3)


@pytest.fixture(scope="session")
def hostile_analysis():
    """Hostile group, layer and model names (HTML, path traversal, collisions)."""
    return synthetic_analysis(
        model_name="../../etc/<b>model</b>",
        group_names=HOSTILE_GROUPS,
        layer_names=("../layer", "/layer"),
        n_neurons=20,
        n_frames=2,
    )
