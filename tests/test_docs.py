"""Every Python code block of README.md and docs/*.md runs, in order, per file.

Blocks of one file share a namespace (a page reads top to bottom); each file runs
in its own temporary working directory, so files the docs write land there.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def test_the_docs_have_python_to_run():
    assert python_blocks(ROOT / "README.md")
    assert python_blocks(ROOT / "docs" / "quickstart.md")


@pytest.mark.parametrize(
    "path", [path for path in DOCS if python_blocks(path)], ids=lambda p: p.name
)
def test_doc_blocks_run(path, tmp_path, monkeypatch):
    blocks = python_blocks(path)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"doc_{path.stem}"}
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"{path.name}, python block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - the docs are ours
