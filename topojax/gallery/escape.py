r"""The one place where data is escaped for HTML and for embedded JSON/JavaScript.

HTML text and attributes are escaped by Jinja2's autoescaping (`html`, the same
function, is exported for the few strings built outside templates). Data for the
page scripts is serialised by `json_for_script`: plain JSON, ASCII only, with
``<``, ``>``, ``&`` and the JavaScript line separators written as ``\uXXXX``
escapes, so the text is inert inside an HTML ``<script>`` element (no
``</script>`` or ``<!--`` can appear), valid as a JavaScript expression and valid
JSON for ``JSON.parse``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import markupsafe

__all__ = ["html", "js_assignment", "json_for_script"]

_SCRIPT_SAFE = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)


def html(text: Any) -> markupsafe.Markup:
    """HTML-escape ``text`` (``&<>"'``) for element content or a quoted attribute."""
    return markupsafe.escape(text)


def _finite(obj: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(value) for value in obj]
    return obj


def json_for_script(obj: Any) -> str:
    r"""Serialise plain data as JSON that is safe inside ``<script>`` and JS files.

    Non-finite floats become ``null``. Keys keep their order (deterministic for
    the same input).

    Args:
        obj: JSON-compatible data (dicts with str keys, lists, str, int, float,
            bool, None).

    Returns:
        ASCII JSON text with no ``<``, ``>``, ``&``, U+2028 or U+2029 characters.

    Raises:
        TypeError: if ``obj`` holds something JSON cannot represent.

    Example:
        >>> json_for_script({"name": "</script>"})
        '{"name":"\\u003c/script\\u003e"}'
    """
    text = json.dumps(
        _finite(obj), ensure_ascii=True, allow_nan=False, separators=(",", ":")
    )
    return text.translate(_SCRIPT_SAFE)


def js_assignment(global_name: str, obj: Any) -> str:
    """A JavaScript statement assigning ``obj`` to ``window[global_name]``.

    Pages load such files with ``<script src>``, which works from ``file://``
    where ``fetch`` of local JSON does not.

    Args:
        global_name: an identifier, e.g. ``"TOPOJAX_LAYER"``.
        obj: JSON-compatible data.

    Returns:
        The text of the script file.

    Raises:
        ValueError: if ``global_name`` is not a plain identifier.
    """
    if not global_name.isidentifier() or not global_name.isascii():
        raise ValueError(f"not a JavaScript identifier: {global_name!r}")
    return f"window.{global_name} = {json_for_script(obj)};\n"
