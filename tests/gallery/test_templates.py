import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from topojax.gallery.templates import (
    environment,
    render_page,
    static_files,
    template_root,
)

REPO = Path(__file__).resolve().parents[2]


def test_source_checkout_finds_the_repository_templates():
    root = template_root()
    assert Path(str(root)) == REPO / "site_templates"
    assert set(static_files()) == {"topojax.css", "topojax.js"}


def test_environment_escapes_and_is_strict():
    import jinja2

    env = environment()
    assert env.autoescape is True
    with pytest.raises(jinja2.UndefinedError):
        render_page("index.html.j2", {})
    with pytest.raises(jinja2.TemplateNotFound):
        env.get_template("../pyproject.toml")


@pytest.mark.slow
def test_installed_wheel_finds_its_templates(tmp_path):
    wheels = tmp_path / "wheels"
    # Offline when the build backend is installed; else pip fetches it (CI).
    isolation = (
        ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", *isolation,
         "--wheel-dir", str(wheels), "--quiet"],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = wheels.glob("topojax-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in (
        "base.html.j2",
        "layer.html.j2",
        "static/topojax.js",
        "static/topojax.css",
    ):
        assert f"topojax/site_templates/{name}" in names
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--ignore-installed",  # a system-wide topojax must not satisfy it
            "--quiet",
            str(wheel),
        ],
        check=True,
    )
    script = (
        "import pathlib, topojax.gallery as g\n"
        "from topojax.gallery.templates import template_root\n"
        "root = pathlib.Path(str(template_root()))\n"
        "assert 'site-packages' in root.parts, root\n"
        "analysis = g.synthetic_analysis(n_frames=0, layer_names=('l',))\n"
        "index = g.build_gallery([analysis], 'out', resolution=8,"
        " render_methods=('nearest',))\n"
        "print(root); print(index.read_text()[:15])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [python, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    root, first = result.stdout.splitlines()[:2]
    assert root.startswith(str(venv)) and root.endswith("topojax/site_templates")
    assert first == "<!DOCTYPE html>"
    assert (tmp_path / "out" / "assets" / "topojax.js").is_file()
