"""Runs every example script's ``main(argv)`` with small sizes."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", EXAMPLES / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_header_and_a_test():
    tested = {
        "per_class_maps",
        "error_contrast_cnn",
        "planted_bias",
        "training_maps",
        "layout_cli",
    }
    scripts = {p.stem for p in EXAMPLES.glob("*.py")} - {"topographic_regularizer"}
    assert scripts == tested
    for name in scripts:
        text = (EXAMPLES / f"{name}.py").read_text()
        assert text.startswith('"""') and "What it shows" in text, name


def test_per_class_maps(tmp_path):
    result = load("per_class_maps").main(
        f"--out {tmp_path}/g --epochs 1 --hidden 32 16 --resolution 16".split()
    )
    assert result["index"].is_file()
    counts = np.asarray(result["profiles"]["hidden1"].counts)
    assert counts.shape == (10,) and counts.sum() == 449


def test_error_contrast_cnn(tmp_path):
    result = load("error_contrast_cnn").main(
        f"--out {tmp_path}/g --epochs 1 --channels 4 8 --resolution 16".split()
    )
    assert result["index"].is_file()
    sizes = result["report"].as_dict()
    assert len(sizes) == 20 and sum(sizes.values()) == 449
    assert sizes["3/wrong"] > 0  # half of the 3s were relabelled 5 in training
    html = "".join(p.read_text() for p in (tmp_path / "g").rglob("*.html"))
    assert "3/wrong" in html


def test_planted_bias_is_visible_only_with_the_dependency(tmp_path):
    """Bias score S (|mean(marked) - mean(plain)| over the typical class distance)
    in the last hidden layer: clearly nonzero for the model trained to depend on
    the attribute, at most half of that for the control. Seen at these sizes:
    biased ~0.8-1.0, control ~0.1-0.2."""
    result = load("planted_bias").main(
        f"--out {tmp_path}/g --steps 300 --hidden 32 16 --resolution 16".split()
    )
    biased = result["biased"]["scores"]["hidden2"]
    control = result["control"]["scores"]["hidden2"]
    print(f"bias score hidden2: biased {biased:.3f}, control {control:.3f}")
    assert result["biased"]["accuracy"] > 0.8
    assert biased > 0.5
    assert control < 0.5 * biased


def test_training_maps(tmp_path):
    result = load("training_maps").main(
        f"--out {tmp_path}/g --animations {tmp_path}/anim --steps 40 --every 10 "
        "--hidden 32 16 --resolution 16".split()
    )
    assert result["labels"] == ["step 0", "step 10", "step 20", "step 30", "step 40"]
    for layer, path in result["animations"].items():
        with Image.open(path) as image:
            assert image.n_frames == 5, layer
        assert result["maps"][layer].naps.shape[0] == 5
    assert result["index"].is_file()


def _has_layout_command():
    from topojax.cli import build_parser

    try:
        build_parser().parse_args(
            ["layout", "x.npy", "--method", "pca", "--out", "y.npy"]
        )
    except SystemExit:
        return False
    return True


def test_layout_cli(tmp_path):
    if not _has_layout_command():
        pytest.skip("the `topojax layout` subcommand is not there yet")
    result = load("layout_cli").main(
        f"--workdir {tmp_path} --hidden 12 --max-iter 20 --resolution 16".split()
    )
    coords = result["coords"]
    assert coords.shape == (12, 2)
    assert coords.min() >= 0 and coords.max() <= 1
    assert result["png"].read_bytes().startswith(b"\x89PNG")


def test_examples_run_as_scripts():
    """A script starts in a fresh interpreter (``--help``; the others share its
    code path, and layout_cli runs the CLI in a subprocess itself)."""
    root = str(EXAMPLES.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "per_class_maps.py"), "--help"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout
