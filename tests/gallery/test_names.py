import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topojax.gallery.names import MAX_SLUG_LENGTH, safe_join, slugify, unique_slugs

SLUG = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("hidden1", "hidden1"),
        ("Layer 1", "layer-1"),
        ("../../etc/passwd", "etc-passwd"),
        ("/abs/path", "abs-path"),
        ("Café", "cafe"),
        ("3→5", "3-5"),
        ("3/correct", "3-correct"),
        ("<img src=x onerror=alert(1)>", "img-src-x-onerror-alert-1"),
        ("..", "unnamed"),
        ("", "unnamed"),
        ("日本", "unnamed"),
        ("CON", "con_"),
        ("umap+swarm", "umap-swarm"),
    ],
)
def test_slugify_examples(name, slug):
    assert slugify(name) == slug


def test_slugify_rejects_non_strings():
    with pytest.raises(TypeError, match="must be a str"):
        slugify(3)


def test_unique_slugs_disambiguates_in_order():
    assert unique_slugs(["a b", "a/b", "A-B", "a-b-2"]) == (
        "a-b",
        "a-b-2",
        "a-b-3",
        "a-b-2-2",
    )
    assert unique_slugs(["x", "x"]) == ("x", "x-2")
    assert unique_slugs(["assets"], reserved=["assets"]) == ("assets-2",)


@given(st.text(max_size=80))
def test_slugify_is_safe(name):
    slug = slugify(name)
    assert SLUG.match(slug), slug
    assert len(slug) <= MAX_SLUG_LENGTH + 1  # +1 for the Windows-reserved suffix
    assert slug not in (".", "..")


@given(
    st.lists(st.text(max_size=20), max_size=12),
    st.sets(st.text(max_size=8), max_size=3),
)
def test_unique_slugs_never_escape_and_never_collide(tmp_path_factory, names, reserved):
    root = tmp_path_factory.getbasetemp() / "root"
    slugs = unique_slugs(names, reserved=reserved)
    assert len(slugs) == len(names)
    assert len(set(slugs)) == len(slugs)
    assert not set(slugs) & set(reserved)
    for slug in slugs:
        assert SLUG.match(slug)
        path = safe_join(root, slug)
        assert path.resolve().parent == root.resolve()


def test_unique_slugs_is_deterministic():
    names = ["a", "A", "a!", "b", "a"]
    assert unique_slugs(names) == unique_slugs(list(names))


@pytest.mark.parametrize("part", ["..", ".", "", "/etc", "a/b", "a\\b", "x\0y"])
def test_safe_join_rejects_unsafe_parts(tmp_path, part):
    with pytest.raises(ValueError, match="unsafe path part"):
        safe_join(tmp_path, part)


def test_safe_join_rejects_symlink_escape(tmp_path):
    (tmp_path / "link").symlink_to(Path("/"))
    with pytest.raises(ValueError, match="leaves the gallery"):
        safe_join(tmp_path, "link", "etc")


def test_safe_join_joins(tmp_path):
    assert safe_join(tmp_path, "a", "b.png") == tmp_path / "a" / "b.png"
