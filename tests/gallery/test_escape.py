import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topojax.gallery.escape import html, js_assignment, json_for_script

XSS = [
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(1)</script>",
    "<!--",
    "&amp;",
]


@pytest.mark.parametrize("name", XSS)
def test_json_for_script_is_inert_in_html(name):
    text = json_for_script({"groups": [name], name: 1})
    assert not set(text) & set("<>&")
    assert json.loads(text) == {"groups": [name], name: 1}


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_json_for_script_round_trips_and_has_no_dangerous_characters(obj):
    text = json_for_script(obj)
    assert text.isascii()
    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(text) == obj


def test_json_for_script_maps_non_finite_to_null():
    assert json_for_script([1.5, float("nan"), float("inf")]) == "[1.5,null,null]"


def test_json_for_script_rejects_non_json():
    with pytest.raises(TypeError):
        json_for_script({"a": object()})


def test_js_assignment():
    assert js_assignment("TOPOJAX_LAYER", {"a": "</script>"}) == (
        'window.TOPOJAX_LAYER = {"a":"\\u003c/script\\u003e"};\n'
    )
    for bad in ["a b", "x;alert(1)", "", "é"]:
        with pytest.raises(ValueError, match="identifier"):
            js_assignment(bad, {})


def test_html_escapes_markup():
    assert str(html(XSS[0])) == "&lt;img src=x onerror=alert(1)&gt;"
    assert str(html("\"'")) == "&#34;&#39;"
