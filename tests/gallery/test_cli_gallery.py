import json

from topojax.cli import main
from topojax.gallery import save_analysis


def test_gallery_command_builds_from_saved_analyses(
    tmp_path, analysis, capsys, monkeypatch
):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    saved = save_analysis(analysis, tmp_path / "model.npz")
    out = tmp_path / "site"
    code = main(
        [
            "gallery",
            str(saved),
            "--out",
            str(out),
            "--resolution",
            "16",
            "--render",
            "nearest",
            "--shape",
            "disk",
            "--title",
            "My <maps>",
        ]
    )
    assert code == 0
    assert str(out / "index.html") in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"] == {
        "resolution": 16,
        "render_methods": ["nearest"],
        "shape": "disk",
        "title": "My <maps>",
    }
    assert "<title>My &lt;maps&gt;</title>" in (out / "index.html").read_text()


def test_gallery_command_reports_errors(tmp_path, capsys):
    assert (
        main(["gallery", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "no analysis file" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("x")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    assert (
        main(["gallery", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "taken")])
        == 2
    )
    assert "not a readable" in capsys.readouterr().err


def test_gallery_command_refuses_a_foreign_directory(tmp_path, analysis, capsys):
    saved = save_analysis(analysis, tmp_path / "model.npz")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("x")
    assert main(["gallery", str(saved), "--out", str(tmp_path / "taken")]) == 2
    assert "not a topojax gallery" in capsys.readouterr().err
    assert (tmp_path / "taken" / "notes.txt").read_text() == "x"
