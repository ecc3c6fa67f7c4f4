"""``SOURCE_DATE_EPOCH``: read and checked in one place, before anything else reads it.

The gallery takes its build date from ``SOURCE_DATE_EPOCH`` (reproducible
builds). NumPy's ``numpy.f2py`` also reads the variable, with a bare ``int()`` at
import time (``numpy/f2py/rules.py``), and SciPy imports it indirectly (its
array-API layer runs ``from numpy import *``, which loads ``numpy.f2py``): an
invalid value would make ``import topojax`` fail inside NumPy with a message
that does not name the variable. `shield_numpy_f2py` (run when
`topojax.layout.base` is imported, before SciPy is) imports ``numpy.f2py`` with
the variable hidden when it is invalid, so the import succeeds; topojax itself
reports the invalid value with `source_date_epoch` (the CLI checks it first
thing; ``build_gallery`` when it reads the date).
"""

from __future__ import annotations

import importlib
import os

__all__ = ["EPOCH_VARIABLE", "MAX_EPOCH", "shield_numpy_f2py", "source_date_epoch"]

EPOCH_VARIABLE = "SOURCE_DATE_EPOCH"
# 9999-12-31 23:59:59 UTC, the last second `datetime` can represent.
MAX_EPOCH = 253_402_300_799


def source_date_epoch() -> int | None:
    """The value of ``SOURCE_DATE_EPOCH`` as seconds, or None when it is unset.

    Returns:
        An int in ``0..MAX_EPOCH`` (up to 9999-12-31 23:59:59 UTC), or None.

    Raises:
        ValueError: the variable is set but is not a decimal integer in
            ``0..MAX_EPOCH``; the message names the variable and the range.
    """
    text = os.environ.get(EPOCH_VARIABLE)
    if text is None:
        return None
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit() and len(stripped) <= 12:
        seconds = int(stripped)
        if seconds <= MAX_EPOCH:
            return seconds
    shown = text if len(text) <= 40 else text[:39] + "…"
    raise ValueError(
        f"environment variable {EPOCH_VARIABLE}={shown!r} is invalid: expected "
        f"whole seconds since 1970-01-01 UTC, an integer in 0..{MAX_EPOCH} "
        "(up to 9999-12-31 23:59:59 UTC), or leave it unset"
    )


def shield_numpy_f2py() -> None:
    """Import ``numpy.f2py`` now, hiding an invalid ``SOURCE_DATE_EPOCH`` from it.

    The variable is put back right after the import; only ``numpy.f2py``'s
    time stamp for generated Fortran wrappers (unused here) is affected.
    """
    try:
        source_date_epoch()
    except ValueError:
        pass
    else:
        return
    text = os.environ.pop(EPOCH_VARIABLE)
    try:
        importlib.import_module("numpy.f2py")
    except ImportError:
        pass  # a NumPy without f2py cannot fail on the variable either
    finally:
        os.environ[EPOCH_VARIABLE] = text
